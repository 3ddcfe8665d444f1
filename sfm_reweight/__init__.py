"""sfm-reweight: Structure-from-Motion and visual localization around a semi-dense matcher with
matchability-based attention reweighting."""

from .matcher import Matcher

__all__ = ["Matcher"]
