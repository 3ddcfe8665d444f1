"""sfm-reweight: Structure-from-Motion and visual localization around a semi-dense matcher with
matchability-based attention reweighting."""

import logging

# the package logger, as hloc's: INFO and above to the terminal by default, from Python as from the
# command line; `logging.getLogger("sfm_reweight")` takes other handlers or levels
_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("[%(asctime)s sfm_reweight %(levelname)s] %(message)s", "%Y/%m/%d %H:%M:%S"))
_handler.setLevel(logging.INFO)
logger = logging.getLogger("sfm_reweight")
logger.setLevel(logging.INFO)
logger.addHandler(_handler)
logger.propagate = False

from .matcher import Matcher  # noqa: E402 - after the logger, which the modules log to

__all__ = ["Matcher", "logger"]
