"""Scoring a reconstruction against known cameras: registration and camera-centre errors after a
similarity alignment (the Strecha protocol); and scoring matches against a reference model (e.g.
SIFT's model of the same photos, where no ground truth exists): how many agree with its epipolar
geometry, before and after geometric verification."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
import torch
from kornia.geometry.epipolar import essential_from_Rt, fundamental_from_essential, sampson_epipolar_distance

from .colmap import verified_matches
from .io import read_keypoints, read_matches
from .utils.pairs import Pair
from .ground_truth import read_strecha_cameras

MIN_ALIGNMENT_IMAGES = 3
EPIPOLAR_THRESHOLD_PX = 4.0  # COLMAP's two-view RANSAC max_error


def read_camera_centres(folder: str | Path) -> dict[str, np.ndarray]:
    """Camera centres [3] (world frame) by image name from Strecha `<image name>.camera` files."""
    return {name: -R.T @ t for name, (_, R, t, _) in read_strecha_cameras(folder).items()}


def camera_centre_errors(
    reconstruction: pycolmap.Reconstruction, gt_centres: dict[str, np.ndarray]
) -> tuple[dict[str, Any], pycolmap.Sim3d | None]:
    """Align the registered images' centres to the ground truth with the least-squares similarity
    (`pycolmap.estimate_sim3d`, all common images) and measure the distances, in ground-truth units.

    Returns ({"registered", "ground_truth", "common", "errors" (name -> distance), "median", "mean",
    "max", "scale" (model -> ground truth)}, the similarity gt_from_model); the error figures and
    the similarity are None with fewer than 3 common images.
    """
    estimated = model_centres(reconstruction)
    names = sorted(set(estimated) & set(gt_centres))
    out: dict[str, Any] = {
        "registered": reconstruction.num_reg_images(),
        "ground_truth": len(gt_centres),
        "common": len(names),
        "errors": {},
        "median": None,
        "mean": None,
        "max": None,
        "scale": None,
    }
    if len(names) < MIN_ALIGNMENT_IMAGES:
        return out, None
    src = np.array([estimated[n] for n in names], np.float64)
    tgt = np.array([gt_centres[n] for n in names], np.float64)
    sim = pycolmap.estimate_sim3d(src, tgt)
    if sim is None:
        return out, None
    errors = np.linalg.norm(sim * src - tgt, axis=1)
    out.update(
        errors={n: float(e) for n, e in zip(names, errors)},
        median=float(np.median(errors)),
        mean=float(errors.mean()),
        max=float(errors.max()),
        scale=float(sim.scale),
    )
    return out, sim


def model_centres(reconstruction: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """Camera centres [3] (world frame) of a model's registered images, by image name."""
    return {
        reconstruction.images[i].name: reconstruction.images[i].projection_center()
        for i in reconstruction.reg_image_ids()
    }


def covisible_pair_angles(
    reference: pycolmap.Reconstruction, pairs: Sequence[Pair], min_shared: int = 30
) -> list[tuple[str, str, float]]:
    """(name0, name1, angle in degrees between the optical axes in the reference model) of the pairs
    that observe at least `min_shared` of its 3D points in common, the widest first: the hardest
    pairs that still overlap, the kind that carries a model's geometry."""
    observed, axes = {}, {}
    for image_id in reference.reg_image_ids():
        image = reference.images[image_id]
        observed[image.name] = {p.point3D_id for p in image.points2D if p.has_point3D()}
        axes[image.name] = image.cam_from_world().rotation.matrix()[2]  # the optical axis, world frame
    angles = [
        (name0, name1, float(np.degrees(np.arccos(np.clip(axes[name0] @ axes[name1], -1.0, 1.0)))))
        for name0, name1 in pairs
        if name0 in observed and name1 in observed and len(observed[name0] & observed[name1]) >= min_shared
    ]
    return sorted(angles, key=lambda pair: -pair[2])


def epipolar_errors(
    reference: pycolmap.Reconstruction, name0: str, name1: str, keypoints0: np.ndarray, keypoints1: np.ndarray
) -> np.ndarray:
    """Sampson distances [M] in pixels of matches keypoints0/1 [M,2] (pixel-centre convention, as in
    our features files) under the reference model's cameras and poses of both images. Each point is
    undistorted with its camera first, so the distance is that of the camera's pinhole image."""
    points, matrices = [], []
    for name, keypoints in ((name0, keypoints0), (name1, keypoints1)):
        image = reference.find_image_with_name(name)
        camera = reference.cameras[image.camera_id]
        K = camera.calibration_matrix()
        normalized = camera.cam_from_img(np.asarray(keypoints, np.float64).reshape(-1, 2) + 0.5)  # COLMAP: corner at 0
        points.append(torch.from_numpy(normalized @ K[:2, :2].T + K[:2, 2]))
        pose = torch.from_numpy(image.cam_from_world().matrix())
        matrices.append((torch.from_numpy(K), pose[:, :3], pose[:, 3:]))
    (K0, R0, t0), (K1, R1, t1) = matrices
    F = fundamental_from_essential(essential_from_Rt(R0, t0, R1, t1), K0, K1)
    return sampson_epipolar_distance(points[0], points[1], F, squared=False).numpy()


def match_precision(
    reference: pycolmap.Reconstruction,
    features: Path,
    matches: Path,
    pairs: Sequence[Pair],
    database: Path | None = None,
    threshold: float = EPIPOLAR_THRESHOLD_PX,
) -> dict[str, Any]:
    """How many matches of `pairs` (features and matches files in our layouts) agree with the
    reference model's geometry, their epipolar error below `threshold` px; with a COLMAP `database`
    also the geometrically verified inliers. Pairs with an image the reference did not register are
    left out.

    Returns {"threshold_px", "pairs" (scored), "matches", "correct", "precision", "verified",
    "verified_correct", "verified_precision", "per_pair": [[name0, name1, matches, correct,
    verified, verified_correct], ...]}; the verified figures are None without a database.
    """
    registered = set(model_centres(reference))
    verified = verified_matches(database) if database is not None else None
    rows = []
    for name0, name1 in pairs:
        if name0 not in registered or name1 not in registered:
            continue
        keypoints0, keypoints1 = read_keypoints(features, name0), read_keypoints(features, name1)

        def num_correct(m: np.ndarray) -> int:
            errors = epipolar_errors(reference, name0, name1, keypoints0[m[:, 0]], keypoints1[m[:, 1]])
            return int((errors < threshold).sum())

        m, _ = read_matches(matches, name0, name1)
        row = [name0, name1, len(m), num_correct(m), None, None]
        if verified is not None:
            inliers = verified.get((name0, name1))
            if inliers is None and (name1, name0) in verified:
                inliers = verified[name1, name0][:, ::-1]
            inliers = np.zeros((0, 2), np.int64) if inliers is None else inliers
            row[4:] = [len(inliers), num_correct(inliers)]
        rows.append(row)

    total, total_correct = sum(r[2] for r in rows), sum(r[3] for r in rows)
    out = {
        "threshold_px": threshold,
        "pairs": len(rows),
        "matches": total,
        "correct": total_correct,
        "precision": total_correct / total if total else None,
        "verified": None,
        "verified_correct": None,
        "verified_precision": None,
        "per_pair": rows,
    }
    if verified is not None:
        inliers, inliers_correct = sum(r[4] for r in rows), sum(r[5] for r in rows)
        out.update(
            verified=inliers,
            verified_correct=inliers_correct,
            verified_precision=inliers_correct / inliers if inliers else None,
        )
    return out
