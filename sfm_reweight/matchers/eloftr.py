"""EfficientLoFTR as published: an official `eloftr_outdoor.ckpt` in our `full` network with
reweighting off, numerically the official model (tests/test_parity.py)."""

from pathlib import Path
from typing import Any

from ..utils.conf import Options
from .base import MatcherUnavailable
from .eloftr_reweight import EloftrReweight

THRESHOLD = 0.1  # coarse threshold of the EfficientLoFTR paper-reproduction scripts


class EfficientLoFTR(EloftrReweight):
    default_conf = {
        "network": Options(
            {"name": "full", "model": {"reweight": {"mode": "off"}, "match_coarse": {"thr": THRESHOLD}}}
        ),
        "weights": None,  # the official checkpoint's path: required (none can ship)
        "seed": 0,
    }

    @classmethod
    def weights_path(cls, conf: dict[str, Any]) -> Path:
        if conf["weights"] is None:
            raise MatcherUnavailable(
                f"{conf['name']}: the official checkpoint is required: --options model.weights=PATH"
            )
        if not Path(conf["weights"]).is_file():
            raise MatcherUnavailable(f"{conf['name']}: checkpoint {conf['weights']} not found")
        return Path(conf["weights"])
