"""From per-pair semi-dense matches to per-image keypoints and one-to-one keypoint matches.

A semi-dense matcher gives every pair its own points; SfM needs one keypoint set per image, shared
by all of its pairs, so that matches chain into tracks. For an image that needs keypoints:

1. Quantization (`BinAccumulator`): every raw point of the image, from every pair, falls into a
   cell of `max(cell_size, max_error)` px (aligned with pixel edges) and, inside it, into a fine
   bin whose diagonal is at most `max_error`. A bin sums the match scores of its points and their
   score-weighted positions. Memory: one entry per occupied bin, whatever the number of pairs.
2. One keypoint per cell: the score-weighted mean position of the cell's best bin, with that bin's
   summed score. A keypoint within `max_error` of a better one is dropped (a cluster of points
   split by a cell border makes one keypoint, not two that would split its tracks); with
   `max_kps`, only the `max_kps` best keypoints are kept.
3. Reassignment (`KeypointIndex`): each raw point goes to the nearest keypoint within `max_error`,
   or to none. Fixed keypoints (reference images) are assigned by the same rule.
4. Matches (`one_to_one`): per pair, raw matches become keypoint matches; where a keypoint is hit
   several times on either side only the highest-scoring match stays.

Differences from hloc's match_dense: the keypoint is the weighted mean of its bin
(sub-pixel) rather than the bin's rounded position; bins are small enough that reassignment keeps
all of the bin's points; keypoints closer than max_error are merged; and every pair is reassigned
(hloc reassigns only with `max_kps`), so points of a cell that lie far from its keypoint never
make a match.
"""

import itertools
import math
from collections.abc import Iterator

import numpy as np

COMPACT_MIN = 1 << 20  # raw points buffered before the accumulator merges them into its bins


class BinAccumulator:
    """Fine bins of one image: summed scores and score-weighted positions of its raw points."""

    def __init__(self, image_size: tuple[int, int], cell_size: float, max_error: float):
        """image_size (w, h); cell_size and max_error in pixels (max_error > 0)."""
        if max_error <= 0:
            raise ValueError(f"max_error must be positive, got {max_error}")
        self.max_error = float(max_error)
        self.cell = max(float(cell_size), self.max_error)
        self.bins_per_cell = math.ceil(self.cell * math.sqrt(2) / max_error - 1e-9)
        self.bin = self.cell / self.bins_per_cell
        self.extent = np.array(image_size, np.float64) - 1e-6  # points clamped into the image
        self.num_x = math.ceil(image_size[0] / self.bin)
        self.ids = np.zeros(0, np.int64)  # occupied bins, sorted
        self.sums = np.zeros((0, 3))  # per bin: sum of scores, of score * x, of score * y
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.num_pending = 0

    def add(self, points: np.ndarray, scores: np.ndarray) -> None:
        """points [M,2] (x, y) pixel-centre convention, scores [M]; non-positive scores are ignored."""
        points, scores = np.asarray(points, np.float64), np.asarray(scores, np.float64)
        keep = (scores > 0) & np.isfinite(points).all(1)
        points, scores = points[keep], scores[keep]
        b = np.floor(np.clip(points + 0.5, 0, self.extent) / self.bin).astype(np.int64)
        self.pending.append((b[:, 1] * self.num_x + b[:, 0], np.column_stack([scores, scores[:, None] * points])))
        self.num_pending += len(scores)
        if self.num_pending > max(COMPACT_MIN, 2 * len(self.ids)):
            self._compact()

    def _compact(self) -> None:
        ids = np.concatenate([self.ids] + [p[0] for p in self.pending])
        sums = np.concatenate([self.sums] + [p[1] for p in self.pending])
        self.ids, inverse = np.unique(ids, return_inverse=True)
        self.sums = np.column_stack([np.bincount(inverse, sums[:, k], len(self.ids)) for k in range(3)])
        self.pending, self.num_pending = [], 0

    def keypoints(self, max_kps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [N,2] float32 and scores [N] float32 in row-major cell order: the best bin of
        every occupied cell, less those within max_error of a better one (their points join it),
        only the `max_kps` highest-scoring ones when set."""
        self._compact()
        bx, by = self.ids % self.num_x, self.ids // self.num_x
        cells_x = -(-self.num_x // self.bins_per_cell)
        cells = (by // self.bins_per_cell) * cells_x + bx // self.bins_per_cell
        score = self.sums[:, 0]
        order = np.lexsort((-score, cells))  # by cell, then best bin first (ties: lower bin id)
        best = order[np.r_[True, cells[order][1:] != cells[order][:-1]]] if len(order) else order
        keypoints, scores = self.sums[best, 1:] / score[best, None], score[best]
        keep = suppress_weaker(keypoints, scores, self.max_error)
        keypoints, scores = keypoints[keep], scores[keep]
        if max_kps and len(best) > max_kps:
            keep = np.sort(np.argsort(-scores, kind="stable")[:max_kps])
            keypoints, scores = keypoints[keep], scores[keep]
        return keypoints.astype(np.float32).reshape(-1, 2), scores.astype(np.float32)


class KeypointIndex:
    """Nearest keypoint within `radius`, exact: keypoints are hashed into square buckets of side
    `radius`, so only the 3x3 buckets around a point can hold a keypoint within reach."""

    def __init__(self, keypoints: np.ndarray, radius: float):
        self.keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
        self.radius = float(radius)
        keys = self._keys(np.floor(self.keypoints / self.radius).astype(np.int64))
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]

    @staticmethod
    def _keys(buckets: np.ndarray) -> np.ndarray:
        return buckets[:, 0] * (1 << 32) + buckets[:, 1]

    def __len__(self) -> int:
        return len(self.keypoints)

    def candidates(self, points: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(point indices, keypoint indices, squared distances) of every keypoint in the 3x3 buckets
        around each of the points [M,2], in batches."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        keys = self._keys(np.floor(points / self.radius).astype(np.int64))
        by_key = np.argsort(keys, kind="stable")  # sorted queries: a much faster searchsorted
        keys = keys[by_key]
        for dx, dy in itertools.product((-1, 0, 1), repeat=2):
            shifted = keys + dx * (1 << 32) + dy  # the neighbour bucket's key, still sorted
            lo = np.searchsorted(self.sorted_keys, shifted, "left")
            hi = np.searchsorted(self.sorted_keys, shifted, "right")
            for j in range(int((hi - lo).max(initial=0))):
                hit = np.flatnonzero(lo + j < hi)
                sel, cand = by_key[hit], self.order[lo[hit] + j]
                yield sel, cand, np.sum((self.keypoints[cand] - points[sel]) ** 2, axis=1)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """[M] int64 index of the nearest keypoint of each point [M,2] within the radius, else -1."""
        best = np.full(len(points), -1, np.int64)
        best_d2 = np.full(len(points), np.inf)
        for sel, cand, d2 in self.candidates(points):
            better = d2 < best_d2[sel]
            best_d2[sel[better]], best[sel[better]] = d2[better], cand[better]
        best[best_d2 > self.radius**2] = -1
        return best


def suppress_weaker(keypoints: np.ndarray, scores: np.ndarray, radius: float) -> np.ndarray:
    """[N] bool: keypoints with no better-scoring keypoint within `radius` (ties: lower index wins)."""
    keep = np.ones(len(keypoints), bool)
    for sel, cand, d2 in KeypointIndex(keypoints, radius).candidates(keypoints):
        stronger = (scores[cand] > scores[sel]) | ((scores[cand] == scores[sel]) & (cand < sel))
        keep[sel[stronger & (d2 <= radius**2)]] = False
    return keep


def one_to_one(ids0: np.ndarray, ids1: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint matches [K,2] int64 (sorted by column 0) and scores [K] from raw matches whose points
    were assigned to keypoints `ids0`, `ids1` [M] (-1: none): a keypoint hit several times keeps its
    highest-scoring match, side 0 first, then side 1."""
    valid = (ids0 >= 0) & (ids1 >= 0)
    order = np.argsort(-scores[valid], kind="stable")
    ids0, ids1, scores = ids0[valid][order], ids1[valid][order], scores[valid][order]
    for side in (0, 1):
        _, first = np.unique(ids0 if side == 0 else ids1, return_index=True)
        first.sort()  # keep the best-first order
        ids0, ids1, scores = ids0[first], ids1[first], scores[first]
    order = np.argsort(ids0, kind="stable")
    return np.stack([ids0[order], ids1[order]], -1), scores[order]


def to_matches0(matches: np.ndarray, scores: np.ndarray, num_keypoints0: int) -> tuple[np.ndarray, np.ndarray]:
    """hloc's per-keypoint layout: matches0 [N0] int32 (-1: none) and matching_scores0 [N0] float32."""
    matches0 = np.full(num_keypoints0, -1, np.int32)
    scores0 = np.zeros(num_keypoints0, np.float32)
    matches0[matches[:, 0]] = matches[:, 1]
    scores0[matches[:, 0]] = scores
    return matches0, scores0
