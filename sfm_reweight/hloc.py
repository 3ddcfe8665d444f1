"""Our matcher as a matcher of hloc's own `match_dense` (cvg/Hierarchical-Localization).

    import sfm_reweight.hloc  # registers hloc.matchers.eloftr_reweight and two confs
    from hloc import match_dense
    features, matches = match_dense.main(match_dense.confs["eloftr_reweight"], pairs, images, export_dir=outputs)

Importing this module adds `ELoFTRReweight` to hloc as the module `hloc.matchers.eloftr_reweight`
(where hloc's `dynamic_load` finds it) and our confs `eloftr_reweight` (every cell matched, 1-px
keypoint cells, as hloc's `loftr`) and `eloftr_reweight_aachen` (`loftr_aachen`'s: at most one
keypoint per 8-px cell, raw points within 2 px join) to `hloc.match_dense.confs`, made from our
match_dense confs of the same names. Nothing of our
package imports this module: hloc (not on PyPI) is needed only by whoever imports it.

hloc reads, resizes and aggregates; the network alone is ours. What our own `match_dense` does
beyond the network does not carry over:
- the Matcher's rotation and zoom search (conf "rotations", "zooms"): one forward pass per pair;
- sparse content matched larger (conf "content_share"): hloc resizes every image to "resize_max";
- the provenance records, resume from the raw-match store and crash-safe writes of our files:
  hloc writes its HDF5 files in place and matches again what is not in them;
- our keypoint aggregation (keypoint_aggregation.py): hloc merges the raw points with its own
  (`assign_keypoints`, `aggregate_matches`), with the conf's "max_error" and "cell_size".
"""

import sys
import types
from typing import Any

import torch
import torch.nn.functional as F

try:
    import hloc  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != "hloc":
        raise
    raise ImportError(
        "sfm_reweight.hloc needs hloc: pip install --no-deps <hloc checkout> (github.com/cvg/Hierarchical-Localization)"
    ) from None
from hloc import match_dense, matchers
from hloc.utils.base_model import BaseModel

from . import match_dense as ours
from .matchers import load
from .matchers.eloftr_reweight import EloftrReweight
from .model.eloftr import COARSE_STRIDE
from .preprocessing import PAD_MULTIPLE
from .utils.conf import overlay
from .utils.errors import InputError

NAME = "eloftr_reweight"
MODULE = f"{matchers.__name__}.{NAME}"  # where hloc's dynamic_load looks for conf["model"]["name"]
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # RGB -> gray, as cv2.COLOR_RGB2GRAY (our Matcher's reading of colour images)
CONFS = ("eloftr_reweight", "eloftr_reweight_aachen")  # ours that hloc gets, under the same names


def hloc_conf(name: str) -> dict[str, Any]:
    """hloc's match_dense conf for our match_dense conf `name`: the same network, weights, matching
    size, keypoint cell and error (one definition for both); grey input in sides of multiples of 8."""
    conf = ours.resolve_conf(name)
    return {
        "output": conf["output"],
        "model": {**{k: v for k, v in conf["model"].items() if k != "name"}, "name": NAME},
        "preprocessing": {"grayscale": True, "resize_max": conf["preprocessing"]["resize_max"], "dfactor": 8},
        "max_error": conf["max_error"],
        "cell_size": conf["cell_size"],
    }


def pad_to_network(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """image [B,1,H,W] -> zero-padded bottom-right to sides of multiples of 32 [B,1,Hp,Wp], and the
    coarse mask [B,Hp/8,Wp/8] bool, True on the cells that lie wholly inside the image."""
    h, w = image.shape[-2:]
    padded = F.pad(image, (0, -w % PAD_MULTIPLE, 0, -h % PAD_MULTIPLE))
    hp, wp = padded.shape[-2:]
    mask = torch.zeros(len(image), hp // COARSE_STRIDE, wp // COARSE_STRIDE, dtype=torch.bool, device=image.device)
    mask[:, : h // COARSE_STRIDE, : w // COARSE_STRIDE] = True
    return padded, mask


def inside(keypoints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """keypoints [M,2] (pixel centres) -> [M] bool, True within an image of `size` (h, w)."""
    h, w = size
    x, y = keypoints.unbind(-1)
    return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


class ELoFTRReweight(BaseModel):
    """EfficientLoFTR with matchability reweighting (our network) behind hloc's matcher interface.

    conf: our matcher's (matchers/eloftr_reweight.py: "network" a Matcher conf, of which only
    "model" and "mixed_precision" matter here; "weights" "default", a shipped name or a checkpoint
    path; "seed"), and hloc's "match_threshold" the coarse threshold (None: the network's own) and
    "max_num_matches" the most matches kept, by score (None: all).
    """

    default_conf = {**EloftrReweight.default_conf, "match_threshold": None, "max_num_matches": None}
    required_inputs = ["image0", "image1"]

    def _init(self, conf: dict[str, Any]) -> None:
        unknown = sorted(set(conf) - set(self.default_conf) - {"name"})
        if unknown:
            raise InputError(
                f"hloc matcher {NAME}: unknown model conf keys {unknown}; expected {sorted(self.default_conf)}"
            )
        model = {key: conf[key] for key in EloftrReweight.default_conf}
        if conf["match_threshold"] is not None:
            threshold = {"model": {"match_coarse": {"thr": float(conf["match_threshold"])}}}
            model["network"] = overlay(model["network"], threshold)
        matcher = load({**model, "name": NAME}, device="cpu").matcher  # hloc moves the model to its device
        self.net = matcher.model
        self.mixed_precision = matcher.conf["mixed_precision"]
        # EfficientLoFTR's two-stage refinement moves image 0's points to the pixel lattice of its window
        # and refines image 1's to sub-pixel; XFeat*'s MLP refines image 0's and leaves image 1's on
        # the coarse lattice. hloc wants image 0's refined (its pairs put the new image first).
        self.swap = self.net.conf["match_fine"]["refinement"] == "two_stage"

    @torch.no_grad()
    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """data: image0 [1,1,H0,W0], image1 [1,1,H1,W1] gray in [0,1] (RGB [1,3,H,W] is converted),
        any sides (padded here to multiples of 32, never resized).

        Returns keypoints0 [M,2], keypoints1 [M,2] in pixels of the images as given (pixel-centre
        convention; image 0's refined to sub-pixel) and scores [M] (coarse confidence), by score.
        """
        image0, image1 = gray(data["image0"]), gray(data["image1"])
        if len(image0) != 1 or len(image1) != 1:
            raise InputError(
                f"hloc matcher {NAME}: one pair per call (batch 1), got batches {len(image0)} and {len(image1)}"
            )
        if self.swap:
            image0, image1 = image1, image0
        size0, size1 = tuple(image0.shape[-2:]), tuple(image1.shape[-2:])
        (padded0, mask0), (padded1, mask1) = pad_to_network(image0), pad_to_network(image1)
        masks = (mask0, mask1) if padded0.shape != image0.shape or padded1.shape != image1.shape else (None, None)
        amp = self.mixed_precision and padded0.is_cuda
        with torch.autocast(padded0.device.type, dtype=torch.float16, enabled=amp):
            pred = self.net(padded0, padded1, *masks)

        kpts0, kpts1 = pred["keypoints0"].float(), pred["keypoints1"].float()
        scores = pred["confidence"].float()
        keep = inside(kpts0, size0) & inside(kpts1, size1)
        kpts0, kpts1, scores = kpts0[keep], kpts1[keep], scores[keep]
        order = torch.argsort(scores, descending=True)
        top_k = self.conf["max_num_matches"]
        if top_k is not None:
            order = order[:top_k]
        kpts0, kpts1, scores = kpts0[order], kpts1[order], scores[order]
        if self.swap:
            kpts0, kpts1 = kpts1, kpts0
        return {"keypoints0": kpts0, "keypoints1": kpts1, "scores": scores}


def gray(image: torch.Tensor) -> torch.Tensor:
    """image [B,1,H,W] or [B,3,H,W] (RGB) in [0,1] -> gray [B,1,H,W] float."""
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise InputError(f"hloc matcher {NAME}: expected images [B,1,H,W] (or RGB [B,3,H,W]), got {list(image.shape)}")
    image = image.float()
    if image.shape[1] == 3:
        image = (image * image.new_tensor(GRAY_WEIGHTS)[:, None, None]).sum(1, keepdim=True)
    return image


def register() -> None:
    """Make `ELoFTRReweight` hloc's matcher `eloftr_reweight` and add our confs to hloc's
    `match_dense.confs` (existing entries of the same names are replaced); idempotent."""
    module = sys.modules.get(MODULE)
    if module is None or getattr(module, "ELoFTRReweight", None) is not ELoFTRReweight:
        module = types.ModuleType(MODULE, f"{NAME}: sfm_reweight's matcher for hloc (registered by sfm_reweight.hloc).")
        module.__package__ = matchers.__name__
        ELoFTRReweight.__module__ = MODULE  # hloc's dynamic_load keeps the BaseModel classes of this module
        module.ELoFTRReweight = ELoFTRReweight
        sys.modules[MODULE] = module
    setattr(matchers, NAME, module)
    for name in CONFS:
        match_dense.confs[name] = hloc_conf(name)


register()
