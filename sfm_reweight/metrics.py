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


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` [K] for binary `labels` [K]: the chance that a positive
    scores above a negative, ties counting half (Mann-Whitney U / (P N)); 0.5 = no information,
    nan without both classes."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based rank of each distinct score, ties averaged
    rank_sum = mean_rank[inverse][labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


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


# ---------------------------------------------------------------------------------------------
# Relative pose (LoFTR / EfficientLoFTR `src/utils/metrics.py`).
# Keypoints are [M,2] float (x, y) pixels in the same convention as the principal point of the K
# they are used with; T_0to1 is [4,4] cam1_from_cam0 (X1 = R X0 + t).

POSE_THRESHOLDS_DEG = (5.0, 10.0, 20.0)
HOMOGRAPHY_THRESHOLDS_PX = (3.0, 5.0, 10.0)
EPIPOLAR_THRESHOLD = 5e-4  # squared symmetric epipolar distance, normalized coordinates


def normalize_keypoints(kpts: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels [M,2] -> normalized image coordinates ((x - cx) / fx, (y - cy) / fy), float64 [M,2]."""
    kpts = np.asarray(kpts, np.float64).reshape(-1, 2)
    return (kpts - K[[0, 1], [2, 2]][None]) / K[[0, 1], [0, 1]][None]


def skew(v: np.ndarray) -> np.ndarray:
    """[3] -> the [3,3] cross-product matrix [v]x."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def essential_from_pose(T_0to1: np.ndarray) -> np.ndarray:
    """E = [t]x R [3,3], so that x1^T E x0 = 0 for normalized points."""
    return skew(T_0to1[:3, 3]) @ T_0to1[:3, :3]


def estimate_relative_pose(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    threshold_px: float = 0.5,
    confidence: float = 0.99999,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Essential matrix by OpenCV RANSAC on normalized keypoints, threshold `threshold_px` divided by
    mean(fx0, fy1, fx0, fy1); `cv2.recoverPose` on each 3x3 candidate, the most inliers wins.
    Returns (R [3,3], t [3] unit, inlier mask [M] bool) or None (< 5 matches or no E)."""
    if len(kpts0) < 5:
        return None
    n0, n1 = normalize_keypoints(kpts0, K0), normalize_keypoints(kpts1, K1)
    threshold = threshold_px / np.mean([K0[0, 0], K1[1, 1], K0[0, 0], K1[1, 1]])
    try:
        E, mask = cv2.findEssentialMat(n0, n1, np.eye(3), method=cv2.RANSAC, prob=confidence, threshold=threshold)
    except cv2.error:  # the five-point solver asserts on some degenerate samples: no E, as when it finds none
        return None
    if E is None:
        return None
    best, result = 0, None
    for candidate in np.split(E, len(E) // 3):
        # A copy: LoFTR passes `mask` itself, which recoverPose overwrites, so that with several
        # candidates each later one sees the previous one's cheirality-filtered inliers.
        n, R, t, _ = cv2.recoverPose(candidate, n0, n1, np.eye(3), 1e9, mask=mask.copy())
        if n > best:
            best, result = n, (R, t[:, 0], mask.ravel() > 0)
    return result


def estimate_relative_pose_lo(
    kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray, threshold_px: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """LO-RANSAC with poselib (`estimate_relative_pose`, max epipolar error `threshold_px` in pixels),
    ELoFTR's `--ransac LO-RANSAC` option. Same return as `estimate_relative_pose`; ImportError with
    an install hint when poselib is missing."""
    try:
        import poselib
    except ImportError as err:
        raise ImportError("LO-RANSAC needs the optional package poselib: pip install poselib") from err
    if len(kpts0) < 5:
        return None

    def camera(K: np.ndarray) -> dict:
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        return {"model": "PINHOLE", "width": int(2 * cx + 1), "height": int(2 * cy + 1), "params": [fx, fy, cx, cy]}

    pose, info = poselib.estimate_relative_pose(
        np.asarray(kpts0, np.float64),
        np.asarray(kpts1, np.float64),
        camera(K0),
        camera(K1),
        {"max_epipolar_error": threshold_px},
        {},
    )
    if pose is None:
        return None
    t = np.asarray(pose.t, np.float64)
    if np.sum(t**2) <= 1e-6:
        return None
    return np.asarray(pose.R, np.float64), t / np.linalg.norm(t), np.asarray(info["inliers"], bool)


def relative_pose_error(T_0to1: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(rotation error, translation-direction error) in degrees: the angle of R^T R_gt, and the
    angle between t and t_gt folded as min(e, 180 - e) (the sign of t is not observable from E)."""
    t_gt = T_0to1[:3, 3]
    n = np.linalg.norm(t) * np.linalg.norm(t_gt)
    err_t = np.rad2deg(np.arccos(np.clip(np.dot(t, t_gt) / n, -1.0, 1.0))) if n > 0 else 90.0
    err_t = min(err_t, 180.0 - err_t)
    cos = np.clip((np.trace(R.T @ T_0to1[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.rad2deg(np.abs(np.arccos(cos)))), float(err_t)


def pose_error(T_0to1: np.ndarray, estimate: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> float:
    """max(rotation, translation) error in degrees of an `estimate_relative_pose` result (inf if None)."""
    if estimate is None:
        return float("inf")
    return max(relative_pose_error(T_0to1, estimate[0], estimate[1]))


def symmetric_epipolar_distance(
    kpts0: np.ndarray, kpts1: np.ndarray, T_0to1: np.ndarray, K0: np.ndarray, K1: np.ndarray
) -> np.ndarray:
    """Squared symmetric epipolar distance [M] of matches in normalized coordinates under the true
    E = [t]x R: (x1^T E x0)^2 (1 / |(E x0)_12|^2 + 1 / |(E^T x1)_12|^2)."""
    x0 = np.concatenate([normalize_keypoints(kpts0, K0), np.ones((len(kpts0), 1))], axis=1)
    x1 = np.concatenate([normalize_keypoints(kpts1, K1), np.ones((len(kpts1), 1))], axis=1)
    E = essential_from_pose(T_0to1)
    Ex0, Etx1 = x0 @ E.T, x1 @ E
    x1Ex0 = np.sum(x1 * Ex0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x1Ex0**2 * (1.0 / (Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2) + 1.0 / (Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2))


def epipolar_precision(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    T_0to1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    threshold: float = EPIPOLAR_THRESHOLD,
) -> float:
    """Fraction of matches whose `symmetric_epipolar_distance` is below `threshold` (0 without matches,
    as LoFTR counts it)."""
    if len(kpts0) == 0:
        return 0.0
    return float(np.mean(symmetric_epipolar_distance(kpts0, kpts1, T_0to1, K0, K1) < threshold))


def homography_precision(kpts0: np.ndarray, kpts1: np.ndarray, H: np.ndarray, threshold: float = 3.0) -> float:
    """Fraction of matches [M,2] with |H(kpts0) - kpts1| <= threshold pixels (0 without matches)."""
    if len(kpts0) == 0:
        return 0.0
    err = np.linalg.norm(apply_homography(H, kpts0) - np.asarray(kpts1, np.float64).reshape(-1, 2), axis=1)
    return float(np.mean(np.nan_to_num(err, nan=np.inf) <= threshold))
