"""What every matcher of `sfm_reweight.matchers` is: a `PairMatcher` with a strict `default_conf`.

    matcher = matchers.load({"name": "opencv_sift"}, resize_max=1024)
    kpts0, kpts1, scores = matcher.match(image0, image1)      # images as given
    for out in matcher.match_pairs(pairs): ...                 # each image at long side resize_max

`match` takes two float32 images in [0,1], [H,W] gray or [H,W,3] RGB, and returns keypoints [M,2]
float32 in those images' pixels (integer values at pixel centres) and scores [M] (higher is better).
`match_pairs` is what match_dense runs: original images in, each shrunk to `resize_max` first,
keypoints back in the original pixels.
"""

import importlib
import importlib.metadata
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from ..matcher import default_device
from ..preprocessing import to_original
from ..utils.conf import merge
from ..utils.errors import SfmReweightError


class MatcherUnavailable(SfmReweightError, RuntimeError):
    """A matcher that cannot run in this environment (missing optional package or checkpoint)."""


class PairMatcher:
    """A matcher of image pairs. Subclasses set `default_conf` and implement `match`; `description`
    (one line) and `info` (what results record: settings, weights, packages) describe the instance."""

    default_conf: ClassVar[dict[str, Any]] = {}
    resizes_itself: ClassVar[bool] = (
        False  # `match` shrinks to resize_max itself: match_pairs passes images as they are
    )

    def __init__(self, conf: dict[str, Any], resize_max: int | None = None, device: str | torch.device | None = None):
        """conf: {"name": module name, ...} overlaid strictly on `default_conf`; resize_max: the long
        side `match_pairs` shrinks each image to (None: as given)."""
        self.conf = self.complete(conf)
        self.resize_max = resize_max
        self.device = torch.device(device) if device is not None else default_device()
        self.label = self.conf["name"]  # its name in tables (the benchmarks: the conf name)
        self.description = self.conf["name"]
        self.info: dict[str, Any] = {}

    @classmethod
    def complete(cls, conf: dict[str, Any]) -> dict[str, Any]:
        """conf {"name": module, ...} with every default of `default_conf`; ConfError for an unknown key."""
        name = conf.get("name", cls.__module__.rsplit(".", 1)[-1])
        return {
            **merge(cls.default_conf, {k: v for k, v in conf.items() if k != "name"}, f"matcher {name}"),
            "name": name,
        }

    @classmethod
    def identity(cls, conf: dict[str, Any]) -> str | None:
        """What this matcher's results depend on beyond its conf (the weights' content hash, a
        package's version), found without building it: match_dense records it so that files of other
        weights are never mixed. None: nothing beyond the conf."""
        return None

    @property
    def fingerprint(self) -> str | None:
        return self.identity(self.conf)

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def match_pairs(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int = 1) -> Iterator[dict]:
        """Float images [H,W](3) in [0,1] -> per pair, in order: keypoints0/1 [M,2] float32 (original
        pixels, pixel centres), confidence [M] float32, image_size0/1 (w, h). One pair at a time:
        `batch_size` is for matchers that batch (ours)."""
        resize_max = None if self.resizes_itself else self.resize_max
        for image0, image1 in pairs:
            (small0, s0), (small1, s1) = resize_long_side(image0, resize_max), resize_long_side(image1, resize_max)
            kpts0, kpts1, scores = self.match(small0, small1)
            yield {
                "keypoints0": to_original(kpts0, s0),
                "keypoints1": to_original(kpts1, s1),
                "confidence": np.asarray(scores, np.float32).reshape(-1),
                "image_size0": np.array(image0.shape[1::-1]),
                "image_size1": np.array(image1.shape[1::-1]),
            }


def resize_long_side(image: np.ndarray, resize: int | None, enlarge: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Shrink so that the long side is at most `resize` (area interpolation) or, with `enlarge`,
    also enlarge smaller images to exactly `resize` (cubic); returns the image and (sx, sy) =
    original pixels per resized pixel.

    Not `preprocessing.resized_size` on purpose: that is our network's rule (sides floored to
    multiples of the coarse stride, a 32 px minimum side, no enlarging but by force); this one gives
    every matcher the same pixels, whatever sizes each network then needs for itself."""
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


def no_matches() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def optional_package(module: str, matcher: str, install: str) -> Any:
    """The optional package `module`, imported; MatcherUnavailable naming `install` when it cannot be
    (any failure counts: a torchvision that does not fit torch fails at import with a RuntimeError)."""
    try:
        return importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import failure makes the optional matcher unavailable
        package = module.split(".")[0].replace("_", "-")
        raise MatcherUnavailable(
            f"{matcher}: the optional package {package} is not importable ({type(err).__name__}: {err});"
            f" install it with {install}"
        ) from None
