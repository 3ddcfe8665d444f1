"""Scoring a reconstruction against known cameras: registration and camera-centre errors after a
similarity alignment (the Strecha protocol)."""

from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from .eval_datasets import DatasetFormatError, read_strecha_camera, require_dir

MIN_ALIGNMENT_IMAGES = 3


def read_camera_centres(folder: str | Path) -> dict[str, np.ndarray]:
    """Camera centres [3] (world frame) by image name from Strecha `<image name>.camera` files."""
    folder = require_dir(Path(folder), "ground-truth cameras folder")
    centres = {}
    for path in sorted(folder.glob("*.camera")):
        _, R, t, _ = read_strecha_camera(path)
        centres[path.name.removesuffix(".camera")] = -R.T @ t
    if not centres:
        raise DatasetFormatError(f"{folder}: no <image name>.camera files")
    return centres


def camera_centre_errors(
    reconstruction: pycolmap.Reconstruction, gt_centres: dict[str, np.ndarray]
) -> tuple[dict[str, Any], pycolmap.Sim3d | None]:
    """Align the registered images' centres to the ground truth with the least-squares similarity
    (`pycolmap.estimate_sim3d`, all common images) and measure the distances, in ground-truth units.

    Returns ({"registered", "ground_truth", "common", "errors" (name -> distance), "median", "mean",
    "max", "scale" (model -> ground truth)}, the similarity gt_from_model); the error figures and
    the similarity are None with fewer than 3 common images.
    """
    estimated = {}
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.images[image_id]
        if image.name in gt_centres:
            estimated[image.name] = image.projection_center()
    names = sorted(estimated)
    out: dict[str, Any] = {
        "registered": reconstruction.num_reg_images(), "ground_truth": len(gt_centres), "common": len(names),
        "errors": {}, "median": None, "mean": None, "max": None, "scale": None,
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
        errors={n: float(e) for n, e in zip(names, errors)}, median=float(np.median(errors)),
        mean=float(errors.mean()), max=float(errors.max()), scale=float(sim.scale),
    )
    return out, sim
