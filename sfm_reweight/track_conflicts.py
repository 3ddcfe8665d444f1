"""Keypoints whose photo repeats itself, found from the matches alone.

The verified matches of all pairs are joined into tracks (connected components of the match graph,
as COLMAP chains them). A track whose keypoints in one photo lie far apart is a contradiction: one
3D point seen twice in the same photo. Either a match is wrong or the photo shows the same thing
twice (identical windows, tiles, arcades). On such scenes a dense matcher's wrong matches are
coherent: whole planes are matched one copy off, consistently across views, and the mapper folds
the map onto them as if the cameras had not moved. Verification cannot tell them apart (a copy
along the camera's path lies on the same epipolar line). Dropping the matches of the contradicted
keypoints leaves the map to what is unique in the photos (a door, a notice, the side walls).
"""

from collections.abc import Mapping

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .utils.pairs import Pair


def ambiguous_keypoints(
    keypoints: Mapping[str, np.ndarray], matches: Mapping[Pair, np.ndarray], max_spread: float
) -> dict[str, np.ndarray]:
    """The keypoints of each photo whose track holds keypoints of that photo spread over more than
    `max_spread` pixels: the larger side of their bounding box (for two keypoints, their larger
    coordinate difference).

    keypoints: name -> [N,2] pixel coordinates. matches: (name0, name1) -> [K,2] keypoint indices,
    column 0 into name0's keypoints (pairs naming a photo without keypoints are ignored).
    Returns name -> [N] bool (True: ambiguous) for every photo of `keypoints`.
    """
    names = list(keypoints)
    start = dict(zip(names, np.cumsum([0] + [len(keypoints[n]) for n in names[:-1]]).tolist()))
    total = sum(len(k) for k in keypoints.values())
    edges = [
        np.asarray(m, np.int64).reshape(-1, 2) + [start[a], start[b]]
        for (a, b), m in matches.items()
        if a in start and b in start
    ]
    edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(total, total))
    _, track = connected_components(graph, directed=False)
    photo = np.repeat(np.arange(len(names)), [len(keypoints[n]) for n in names])
    xy = np.concatenate([keypoints[n] for n in names]) if names else np.zeros((0, 2), np.float32)

    # The keypoints of one photo in one track: the larger side of their bounding box against max_spread.
    matched = np.unique(edges)
    groups, group = np.unique(track[matched].astype(np.int64) * len(names) + photo[matched], return_inverse=True)
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
