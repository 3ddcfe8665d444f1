"""sfm-reweight: Structure-from-Motion and visual localization around a semi-dense matcher with
matchability-based attention reweighting."""

import logging

# the package logger, as hloc's: INFO and above to the terminal by default, from Python as from the
# command line; `logging.getLogger("sfm_reweight")` takes other handlers or levels
formatter = logging.Formatter(fmt="[%(asctime)s sfm_reweight %(levelname)s] %(message)s", datefmt="%Y/%m/%d %H:%M:%S")
handler = logging.StreamHandler()
handler.setFormatter(formatter)
handler.setLevel(logging.INFO)
logger = logging.getLogger("sfm_reweight")
logger.setLevel(logging.INFO)
logger.addHandler(handler)
logger.propagate = False

from .matcher import Matcher  # noqa: E402 - after the logger, which the modules log to

__all__ = ["Matcher", "logger"]
