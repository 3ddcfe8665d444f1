"""The classical baseline: COLMAP's SIFT (pycolmap, RootSIFT-normalised) matched by mutual nearest
neighbour with Lowe's ratio test. In SfM its keypoints are extracted once per image and matched by
descriptor (match_features.py, hloc's features path); `match` does both steps for one pair."""

import cv2
import numpy as np
import pycolmap

from ..preprocessing import resized_size, to_original
from .base import PairMatcher, gray

CHUNK_ROWS = 2048  # descriptor-similarity rows computed at once


class ColmapSift(PairMatcher):
    default_conf = {"max_num_features": 8192, "ratio": 0.8}
    per_image_features = True  # match_dense hands it to match_features (keypoints once per image)
    resizes_itself = True  # `extract` shrinks each image to resize_max

    def __init__(self, conf, resize_max=None, device=None):
        super().__init__(conf, resize_max, device)
        options = pycolmap.FeatureExtractionOptions()
        options.sift.max_num_features = self.conf["max_num_features"]
        self.extractor = pycolmap.FeatureExtractor.create(options, device=pycolmap.Device.cpu)
        self.info = {"max_num_features": self.conf["max_num_features"], "ratio": self.conf["ratio"]}
        self.description = (
            f"COLMAP SIFT (pycolmap, {self.conf['max_num_features']} features), ratio {self.conf['ratio']}"
        )

    def extract(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """SIFT of a float32 image [H,W](3) in [0,1], shrunk to `resize_max` first: keypoints [N,2]
        float32 (original pixels, pixel centres), scales [N] (original pixels), descriptors [N,128] uint8."""
        image = gray(image)
        h, w = image.shape
        resize_max = self.resize_max
        new_w, new_h = resized_size(w, h, resize_max, False) if resize_max and max(w, h) > resize_max else (w, h)
        if (new_w, new_h) != (w, h):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        keypoints, descriptors = self.extractor.extract_from_float32_array(np.ascontiguousarray(image, np.float32))
        kp = pycolmap.keypoints_to_matrix(keypoints).reshape(-1, 4)
        scale = np.array([w / new_w, h / new_h])
        return {
            # COLMAP puts pixel corners at integers: - 0.5 gives pixel centres in the resized image
            "keypoints": to_original(kp[:, :2].astype(np.float64) - 0.5, scale),
            "scales": (kp[:, 2] * scale.mean()).astype(np.float32),
            "descriptors": np.asarray(descriptors.data, np.uint8).reshape(-1, 128),
        }

    def match(self, image0, image1):
        f0, f1 = self.extract(image0), self.extract(image1)
        matches0, scores0 = match_descriptors(f0["descriptors"], f1["descriptors"], self.conf["ratio"])
        valid = matches0 > -1
        return f0["keypoints"][valid], f1["keypoints"][matches0[valid]], scores0[valid]


def _unit(descriptors: np.ndarray) -> np.ndarray:
    d = descriptors.astype(np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)


def match_descriptors(desc0: np.ndarray, desc1: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours of descriptors [N0,D] and [N1,D] passing the ratio test: matches0
    [N0] int32 (-1: none) and matching_scores0 [N0] float32 (cosine similarity)."""
    d0, d1 = (_unit(d) for d in (desc0, desc1))
    matches0 = np.full(len(d0), -1, np.int32)
    scores0 = np.zeros(len(d0), np.float32)
    if len(d0) == 0 or len(d1) < 2:
        return matches0, scores0
    nn = np.zeros(len(d0), np.int64)
    best, second = np.zeros(len(d0), np.float32), np.zeros(len(d0), np.float32)
    col_best, col_arg = np.full(len(d1), -np.inf, np.float32), np.zeros(len(d1), np.int64)
    for start in range(0, len(d0), CHUNK_ROWS):
        sim = d0[start : start + CHUNK_ROWS] @ d1.T
        rows = np.arange(len(sim))
        top2 = np.argpartition(-sim, 1, axis=1)[:, :2]
        first = np.where(sim[rows, top2[:, 0]] >= sim[rows, top2[:, 1]], top2[:, 0], top2[:, 1])
        nn[start : start + len(sim)] = first
        best[start : start + len(sim)] = sim[rows, first]
        second[start : start + len(sim)] = sim[rows, top2.sum(1) - first]
        col = sim.argmax(0)
        better = sim[col, np.arange(len(d1))] > col_best
        col_best[better], col_arg[better] = sim[col, np.arange(len(d1))][better], col[better] + start
    distance = np.sqrt(np.maximum(2 - 2 * np.stack([best, second]), 0))  # between unit vectors
    keep = (col_arg[nn] == np.arange(len(d0))) & (distance[0] < ratio * distance[1])
    matches0[keep], scores0[keep] = nn[keep], best[keep]
    return matches0, scores0
