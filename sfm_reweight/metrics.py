"""Accuracy metrics of the LoFTR / EfficientLoFTR evaluation protocols."""

import cv2
import numpy as np


def error_auc(errors: list[float] | np.ndarray, thresholds: list[float]) -> dict[float, float]:
    """Area under the cumulative error curve up to each threshold, divided by it (LoFTR's `error_auc`):
    errors sorted with a 0 prepended, recall = linspace(0, 1, n+1), trapezoids, the last point
    extended flat to the threshold. Infinite errors (failures) count as misses."""
    errors = np.sort(np.asarray(errors, np.float64))
    errors = np.concatenate([[0.0], errors])
    recall = np.linspace(0, 1, len(errors))
    aucs = {}
    for t in thresholds:
        last = np.searchsorted(errors, t)
        e = np.concatenate([errors[:last], [t]])
        r = np.concatenate([recall[:last], [recall[last - 1]]])
        aucs[t] = float(np.trapezoid(r, x=e) / t)
    return aucs


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points [K,2] (x, y) -> H applied to them, [K,2] float64 (points at infinity come out inf/nan)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(H, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return homogeneous[:, :2] / homogeneous[:, 2:]


def corner_error(H_est: np.ndarray | None, H_gt: np.ndarray, w: int, h: int) -> float:
    """Mean distance of image 0's four corner pixels mapped by the estimate and by the truth (inf if none)."""
    if H_est is None:
        return float("inf")
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    return float(np.linalg.norm(apply_homography(H_est, corners) - apply_homography(H_gt, corners), axis=1).mean())


def ransac_homography(kpts0: np.ndarray, kpts1: np.ndarray, threshold: float = 3.0) -> np.ndarray | None:
    """OpenCV RANSAC homography from matches [M,2] (None with fewer than 4 matches or no estimate)."""
    if len(kpts0) < 4:
        return None
    H, _ = cv2.findHomography(kpts0.astype(np.float64), kpts1.astype(np.float64), cv2.RANSAC, threshold)
    return H
