"""Our matcher as a matcher of hloc's own `match_dense` (cvg/Hierarchical-Localization).

    import sfm_reweight.hloc  # registers hloc.matchers.eloftr_reweight and two confs
    from hloc import match_dense
    features, matches = match_dense.main(match_dense.confs["eloftr_reweight"], pairs, images, export_dir=outputs)

Importing this module adds `ELoFTRReweight` to hloc as the module `hloc.matchers.eloftr_reweight`
(where hloc's `dynamic_load` finds it) and the confs `eloftr_reweight` (hloc's `loftr` settings:
1 px, every keypoint; small scenes) and `eloftr_reweight_aachen` (`loftr_aachen`'s: at most one
keypoint per 8-px cell, raw points within 2 px join) to `hloc.match_dense.confs`. Nothing of our
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

import copy
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

from .matcher import DEFAULT_CONF, Matcher, resolve_matcher_conf
from .model.eloftr import COARSE_STRIDE
from .preprocessing import PAD_MULTIPLE
from .utils.conf import merge
from .utils.errors import InputError

NAME = "eloftr_reweight"
MODULE = f"{matchers.__name__}.{NAME}"  # where hloc's dynamic_load looks for conf["model"]["name"]
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # RGB -> gray, as cv2.COLOR_RGB2GRAY (our Matcher's reading of colour images)

# Every cell matched, as our own SfM confs (match_dense's eloftr_reweight): the Matcher conf's shortcut of
# the most reliable third of the cells halves the time but doubles fountain-P11's camera-centre errors.
SFM_CONF = {"name": DEFAULT_CONF, "model": {"match_coarse": {"top_k": None}}}
confs: dict[str, dict[str, Any]] = {
    # best quality but loads of points, as hloc's `loftr`: small scenes
    NAME: {
        "output": "matches-eloftr-reweight",
        "model": {"name": NAME, "conf": SFM_CONF, "weights": "default"},
        "preprocessing": {"grayscale": True, "resize_max": 1024, "dfactor": 8},
        "max_error": 1,  # px: a raw point joins a keypoint at most this far away
        "cell_size": 1,  # px: at most one keypoint per cell of this size
    },
    # semi-scalable, as hloc's `loftr_aachen`: at most one keypoint per 8-px cell
    f"{NAME}_aachen": {
        "output": "matches-eloftr-reweight_aachen",
        "model": {"name": NAME, "conf": SFM_CONF, "weights": "default"},
        "preprocessing": {"grayscale": True, "resize_max": 1024, "dfactor": 8},
        "max_error": 2,
        "cell_size": 8,
    },
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

    conf: "conf" our Matcher conf (a name in `sfm_reweight.matcher.confs` or a dict overlaid on one;
    only its "model", "weights" and "mixed_precision" matter here), "weights" "default" (the conf's
    shipped checkpoint), a shipped name or a checkpoint path, "match_threshold" the coarse threshold
    (None: the conf's own), "max_num_matches" the most matches kept, by score (None: all).
    """

    default_conf = {
        "conf": DEFAULT_CONF,
        "weights": "default",
        "match_threshold": None,
        "max_num_matches": None,
    }
    required_inputs = ["image0", "image1"]

    def _init(self, conf: dict[str, Any]) -> None:
        unknown = sorted(set(conf) - set(self.default_conf) - {"name"})
        if unknown:
            raise InputError(
                f"hloc matcher {NAME}: unknown model conf keys {unknown}; expected {sorted(self.default_conf)}"
            )
        matcher_conf = resolve_matcher_conf(conf["conf"])
        if conf["match_threshold"] is not None:
            matcher_conf = merge(matcher_conf, {"model": {"match_coarse": {"thr": float(conf["match_threshold"])}}})
        if conf["weights"] is None:
            raise InputError("hloc conf model.weights is None: give 'default', a shipped name or a checkpoint path")
        matcher = Matcher(matcher_conf, weights=conf["weights"], device="cpu")  # hloc moves the model to its device
        self.net = matcher.model
        self.mixed_precision = matcher_conf["mixed_precision"]
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
    for name, conf in confs.items():
        match_dense.confs[name] = copy.deepcopy(conf)


register()
