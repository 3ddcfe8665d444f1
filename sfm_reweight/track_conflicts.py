"""Keypoints whose photo repeats itself, found from the matches alone.

All pairwise matches are joined into tracks (connected components of the match graph, as COLMAP
chains them). A track that holds keypoints of one photo spread far apart is a contradiction: one
3D point seen twice in the same photo. Either a match is wrong or the photo shows the same thing
twice (identical windows, tiles, arcades). On such scenes a dense matcher's wrong matches are
coherent: whole planes are matched one copy off, consistently across views, and the mapper folds
the map onto them as if the cameras had not moved. Verification cannot tell them apart (a copy
along the camera's path lies on the same epipolar line). Dropping the matches of the contradicted
keypoints leaves the map to what is unique in the photos (a door, a notice, the side walls).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .io import open_h5, read_keypoints, read_matches
from .utils.errors import MissingEntryError
from .utils.pairs import Pair


def ambiguous_keypoints(
    features: Path, matches: Path, pairs: Sequence[Pair], max_spread: float, min_score: float | None = None
) -> dict[str, np.ndarray]:
    """The keypoints of each photo whose track (the matches of all `pairs` scoring at least
    `min_score`, joined) holds keypoints of that photo spread over more than `max_spread` pixels:
    the larger side of their bounding box (two keypoints: their larger coordinate difference).

    Returns name -> [N] bool (True: ambiguous), N the photo's keypoints in `features`, for every
    photo of `pairs` that has keypoints. Pairs without matches are skipped.
    """
    with open_h5(features) as ffeat, open_h5(matches) as fmatch:
        names = sorted({name for pair in pairs for name in pair if name in ffeat})
        keypoints = {name: read_keypoints(ffeat, name) for name in names}
        start = dict(zip(names, np.cumsum([0] + [len(keypoints[n]) for n in names[:-1]]).tolist()))
        edges = []  # [K, 2] global keypoint indices of every match
        for name0, name1 in pairs:
            if name0 not in start or name1 not in start:
                continue
            try:
                m, scores = read_matches(fmatch, name0, name1)
            except MissingEntryError:
                continue
            if min_score is not None:
                m = m[scores >= min_score]
            edges.append(m.astype(np.int64) + [start[name0], start[name1]])
    total = sum(len(k) for k in keypoints.values())
    edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(total, total))
    _, track = connected_components(graph, directed=False)
    photo = np.repeat(np.arange(len(names)), [len(keypoints[n]) for n in names])
    xy = np.concatenate([keypoints[n] for n in names]) if names else np.zeros((0, 2), np.float32)

    # The keypoints of one photo in one track: the larger side of their bounding box against max_spread.
    matched = np.unique(edges)
    group = track[matched].astype(np.int64) * len(names) + photo[matched]
    groups, group = np.unique(group, return_inverse=True)
    spread = np.zeros(len(groups))
    for axis in range(2):
        low = np.full(len(groups), np.inf)
        high = np.full(len(groups), -np.inf)
        np.minimum.at(low, group, xy[matched, axis])
        np.maximum.at(high, group, xy[matched, axis])
        spread = np.maximum(spread, high - low)
    ambiguous = np.zeros(total, bool)
    ambiguous[matched] = spread[group] > max_spread
    return {name: ambiguous[start[name] : start[name] + len(keypoints[name])] for name in names}
