"""Ours: EfficientLoFTR with matchability-based attention reweighting (`sfm_reweight.Matcher`).

The network conf ("network") is a `Matcher` conf: a name in `matcher.confs` (`xfeat`: XFeat's
pretrained backbone under our reweighted transformer; `lite`; `full`) or a dict overlaid on one,
e.g. {"name": "xfeat", "model": {"match_coarse": {"top_k": None}}} for every cell, or "rotations"
and "zooms" for the rotation/zoom search (matcher.py). Its "resize_max" is set by the caller's
`resize_max` (match_dense's preprocessing; None in the two-view benchmarks, which resize first).
"photometric": image 1's points aligned onto image 0's patches on the images as given (the photos
at their own resolution in match_dense; `refine_tracks.align_pair`), after the network's refinement
at its working resolution.
"""

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import refine_tracks
from ..image_io import to_gray_float
from ..matcher import DEFAULT_CONF, Matcher, resolve_matcher_conf
from ..model.weights import resolve_weights
from ..utils.conf import Options, resolve
from ..utils.errors import InputError
from ..utils.provenance import file_hash
from .base import PairMatcher

RANDOM = "random"  # "weights": the network's random initialisation, only when asked for (tests, speed)


class EloftrReweight(PairMatcher):
    default_conf = {
        # a Matcher conf (matcher.py): checked there, key by key
        "network": Options({"name": DEFAULT_CONF}),
        # "default" (the network conf's shipped checkpoint), a shipped name, a checkpoint path, or RANDOM
        "weights": "default",
        # torch's seed before the network is built: weights no checkpoint sets are reproducible
        "seed": 0,
        # a refine_tracks conf name: image 1's points aligned on the given images (None: the network's)
        "photometric": None,
    }

    def __init__(self, conf: dict[str, Any], resize_max: int | None = None, device: str | torch.device | None = None):
        super().__init__(conf, resize_max, device)
        network = self.network_conf(self.conf, resize_max)
        path = self.weights_path(self.conf)
        torch.manual_seed(self.conf["seed"])
        self.matcher = Matcher(network, weights=path, device=self.device)
        photometric = self.conf["photometric"]
        self.photometric = None if photometric is None else resolve(refine_tracks.confs, photometric, what="refinement")
        model = self.matcher.model.conf
        self.info = {
            "network": network["name"],
            "weights": None if path is None else str(path),
            "reweight": model["reweight"]["mode"],
            "thr": model["match_coarse"]["thr"],
            "top_k": model["match_coarse"]["top_k"],
            "refinement": model["match_fine"]["refinement"],
            "rotations": network["rotations"],
            "zooms": network["zooms"],
            "search_resize_max": network["search_resize_max"],
            "content_share": network["content_share"],
            "content_upscale_max": network["content_upscale_max"],
            "device": str(self.device),
        }
        self.description = (
            f"Matcher({network['name']!r}, weights={path or RANDOM}), reweight {self.info['reweight']},"
            f" thr {self.info['thr']}, top_k {self.info['top_k']}"
            + (", XFeat*'s refinement" if self.info["refinement"] == "xfeat" else "")
            + (f", rotations {network['rotations']}" if network["rotations"] != [0] else "")
            + (f", zooms {network['zooms']}" if network["zooms"] != [1.0] else "")
            + (f", ranked at long side {network['search_resize_max']}" if network["search_resize_max"] else "")
            + (
                f", sparse content (< {network['content_share']} of the cells) up to {network['content_upscale_max']}x"
                if network["content_share"] is not None
                else ""
            )
        )

    @staticmethod
    def network_conf(conf: dict[str, Any], resize_max: int | None) -> dict[str, Any]:
        """The resolved Matcher conf of a matcher conf, at long side `resize_max`."""
        return resolve_matcher_conf({**conf["network"], "resize_max": resize_max})

    @classmethod
    def weights_path(cls, conf: dict[str, Any]) -> Path | None:
        """The checkpoint a matcher conf loads, None for RANDOM; InputError when it names none and its
        network conf ships none."""
        weights = conf["weights"]
        if weights is None:
            raise InputError(
                f"matcher {conf['name']}: weights None; give 'default', a shipped name, a checkpoint or {RANDOM!r}"
            )
        if weights == RANDOM:
            return None
        network = resolve_matcher_conf(dict(conf["network"]))
        return resolve_weights(Matcher.resolve_default(weights, network["weights"], network["name"]))

    @classmethod
    def identity(cls, conf: dict[str, Any]) -> str:
        """The weights' content hash (sha256), or RANDOM."""
        path = cls.weights_path(conf)
        return RANDOM if path is None else file_hash(path)

    @property
    def fingerprint(self) -> str:
        return self.matcher.fingerprint

    def match(self, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.aligned(image0, image1, self.matcher(image0, image1))
        return out["keypoints0"], out["keypoints1"], out["confidence"]

    def match_pairs(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int = 1) -> Iterator[dict]:
        """`Matcher.match_pairs`: the network resizes each pair itself (to the network's sizes) and
        batches consecutive pairs of the same sizes."""
        if self.photometric is None:
            return self.matcher.match_pairs(pairs, batch_size)
        given, matched = itertools.tee(pairs)  # holds only the pairs of the batch in flight
        outputs = self.matcher.match_pairs(matched, batch_size)
        return (self.aligned(*pair, out) for pair, out in zip(given, outputs, strict=True))

    def aligned(self, image0: np.ndarray, image1: np.ndarray, out: dict) -> dict:
        """The network's output with keypoints1 aligned photometrically (conf "photometric")."""
        if self.photometric is None:
            return out
        image0, image1 = (torch.from_numpy(to_gray_float(i)) for i in (image0, image1))
        points1, _ = refine_tracks.align_pair(self.photometric, image0, image1, out["keypoints0"], out["keypoints1"])
        return {**out, "keypoints1": points1.astype(np.float32)}
