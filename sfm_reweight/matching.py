"""The pipelines' matching step by name: a `match_dense` configuration (our matcher, or an XFeat
peer) or the SIFT path (`sift`), into hloc's features and matches files. Images already in the
features file keep their keypoints, so queries matched into a map's features file leave the map's
keypoints (and its model's 2D points) as they are."""

from pathlib import Path
from typing import Any

from . import match_dense, sift
from .utils.errors import InputError

MATCHERS = [*match_dense.confs, *sift.confs]


def label(matcher: str) -> str:
    """A matcher's name in summaries and figures: its conf name, but which SIFT for `sift`."""
    return sift.LABEL if matcher in sift.confs else matcher


def takes_weights(matcher: str) -> bool:
    """Whether `matcher` is our network (a match_dense conf without a peer), the only one with weights."""
    return matcher in match_dense.confs and match_dense.confs[matcher]["peer"] is None


def check_matcher(matcher: str, weights: str | None = None, cluster: dict[str, Any] | None = None) -> None:
    """InputError unless `matcher` is in MATCHERS and takes the `weights` and `cluster` given (before any work)."""
    if matcher not in MATCHERS:
        raise InputError(f"unknown matcher {matcher!r}; expected one of {', '.join(MATCHERS)}")
    if weights is not None and not takes_weights(matcher):
        raise InputError(f"--weights does not apply to --matcher {matcher} (it is for our matcher)")
    if (cluster or {}).get("address") is not None and matcher in sift.confs:
        raise InputError(f"--cluster does not apply to --matcher {matcher} (SIFT runs here)")


def match(
    matcher: str,
    pairs: Path,
    image_dir: Path,
    export_dir: Path | None = None,
    features: Path | None = None,
    matches: Path | None = None,
    weights: str | None = None,
    cluster: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Features and matches of the pairs in `pairs` (images under `image_dir`) by `matcher`, a name
    in MATCHERS; `weights` (a shipped name or a checkpoint) for our matcher only; `cluster`: where
    to match, match_dense's "cluster" conf section (address, workers; match_dense's matchers only). Returns the paths (hloc's
    names in `export_dir` unless given)."""
    check_matcher(matcher, weights, cluster)
    if matcher in sift.confs:
        return sift.main(matcher, pairs, image_dir, export_dir, matches=matches, features=features)
    conf = {"name": matcher, **({"weights": weights} if weights else {}), "cluster": cluster or {}}
    return match_dense.main(conf, pairs, image_dir, export_dir, matches=matches, features=features)
