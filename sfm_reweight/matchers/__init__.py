"""The matchers, one module each, as hloc's `matchers/`: ours (`eloftr_reweight`), EfficientLoFTR as
published (`eloftr`), the peers (`xfeat`, `xfeat_star`, `xfeat_lighterglue`, `lightglue`) and the
classical baselines (`colmap_sift`, `opencv_sift`). Each module defines one `PairMatcher` with its
`default_conf`; the named configurations users choose from (`match_dense.confs`) say which module
and settings, in a "model" section {"name": module, ...}."""

import importlib
import inspect
from typing import Any

import torch

from ..utils.conf import ConfError
from .base import MatcherUnavailable, PairMatcher

__all__ = ["NAMES", "MatcherUnavailable", "PairMatcher", "load", "matcher_class"]

NAMES = (
    "eloftr_reweight",
    "eloftr",
    "xfeat",
    "xfeat_star",
    "xfeat_lighterglue",
    "lightglue",
    "colmap_sift",
    "opencv_sift",
)


def matcher_class(name: str) -> type[PairMatcher]:
    """The `PairMatcher` defined in module `name` of this package."""
    if name not in NAMES:
        raise ConfError(f"unknown matcher {name!r}; expected one of {', '.join(NAMES)}")
    module = importlib.import_module(f"{__name__}.{name}")
    (cls,) = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, PairMatcher) and c.__module__ == module.__name__
    ]
    return cls


def load(conf: dict[str, Any], resize_max: int | None = None, device: str | torch.device | None = None) -> PairMatcher:
    """The matcher of a model conf {"name": module, ...}, shrinking images to `resize_max` in
    `match_pairs`; MatcherUnavailable when it cannot run here (optional package or checkpoint missing)."""
    return matcher_class(conf["name"])(conf, resize_max, device)
