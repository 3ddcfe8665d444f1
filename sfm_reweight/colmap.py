"""pycolmap glue shared by reconstruction and triangulation: a COLMAP database filled from our HDF5
files, geometric verification, model files and a one-line model summary.

pycolmap 4.2.1 behaviour relied on: `import_images` needs the database file
to exist and leaves out, with a log line, images it cannot read; a `TwoViewGeometry` written without
`config` is silently ignored by mapping and triangulation, so verified pairs written here always
carry one; the database takes keypoints in COLMAP's convention (pixel corner at 0), ours + 0.5.
"""

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
from tqdm import tqdm

from . import cli
from .io import open_h5, read_keypoints, read_matches
from .utils.conf import overlay
from .utils.errors import MissingEntryError
from .utils.pairs import Pair

logger = logging.getLogger(__name__)

# The camera parameters bundle adjustment can refine or keep: COLMAP's `refine_<name>` and `ba_refine_<name>` options.
INTRINSICS = ("focal_length", "principal_point", "extra_params")


def num_threads(requested: int | None = None) -> int:
    return requested or min(os.cpu_count() or 1, 16)


@contextmanager
def colmap_logging(verbose: bool) -> Iterator[None]:
    """pycolmap's own log lines: all of them when verbose, else warnings and errors only."""
    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 1
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def new_database(path: Path) -> Path:
    """An empty database at `path` (an existing one is replaced: the database is derived data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    pycolmap.Database.open(path).close()
    return path


def import_images(
    database: Path, image_dir: Path, names: Sequence[str], camera_mode: str, options: dict[str, Any]
) -> dict[str, int]:
    """Add images (size and EXIF focal read from the files) with cameras per `camera_mode` (auto,
    single, per_folder, per_image) and ImageReaderOptions `options`. Returns name -> image id;
    images pycolmap cannot read are reported and left out."""
    mode = pycolmap.CameraMode.__members__[camera_mode.upper()]
    reader_options = pycolmap.ImageReaderOptions(options)
    pycolmap.import_images(database, image_dir, mode, image_names=list(names), options=reader_options)
    db = pycolmap.Database.open(database)
    ids = {image.name: image.image_id for image in db.read_all_images()}
    db.close()
    missing = [n for n in names if n not in ids]
    if missing:
        logger.warning("%d unreadable images left out of the reconstruction: %s", len(missing), cli.short_list(missing))
    return ids


def database_from_model(database: Path, reconstruction: pycolmap.Reconstruction) -> dict[str, int]:
    """Write a model's cameras, rigs, frames and images into the database with their ids; returns
    name -> image id."""
    db = pycolmap.Database.open(database)
    for camera in reconstruction.cameras.values():
        db.write_camera(camera, use_camera_id=True)
    for rig in reconstruction.rigs.values():
        db.write_rig(rig, use_rig_id=True)
    for frame in reconstruction.frames.values():
        db.write_frame(frame, use_frame_id=True)
    for image in reconstruction.images.values():
        db.write_image(image, use_image_id=True)
    db.close()
    return {image.name: image_id for image_id, image in reconstruction.images.items()}


def import_features(
    database: Path,
    image_ids: dict[str, int],
    pairs: Sequence[Pair],
    features: Path,
    matches: Path,
    min_match_score: float | None = None,
    verified_config: pycolmap.TwoViewGeometryConfiguration | None = None,
) -> dict[str, int]:
    """Write the keypoints (+0.5) of every image in `image_ids` and the matches of every pair of
    them; with `verified_config`, the matches are also written as verified two-view geometries of
    that configuration (no geometric verification). Images without keypoints get none and pairs
    without matches are skipped; returns counts of what was written and skipped."""
    stats = dict.fromkeys(("images", "images_without_keypoints", "pairs", "pairs_without_matches", "matches"), 0)
    db = pycolmap.Database.open(database)
    with open_h5(features) as ffeat, open_h5(matches) as fmatch:
        with_keypoints = set()
        for name, image_id in tqdm(image_ids.items(), desc="database: keypoints", unit="image"):
            if name in ffeat:
                db.write_keypoints(image_id, read_keypoints(ffeat, name) + 0.5)
                with_keypoints.add(name)
            else:
                db.write_keypoints(image_id, np.zeros((0, 2), np.float32))
        stats["images"] = len(with_keypoints)
        stats["images_without_keypoints"] = len(image_ids) - len(with_keypoints)
        for name0, name1 in tqdm(pairs, desc="database: matches", unit="pair"):
            if name0 not in with_keypoints or name1 not in with_keypoints:
                continue
            try:
                m, scores = read_matches(fmatch, name0, name1)
            except MissingEntryError:
                stats["pairs_without_matches"] += 1
                continue
            if min_match_score is not None:
                m = m[scores >= min_match_score]
            m = m.astype(np.uint32)
            db.write_matches(image_ids[name0], image_ids[name1], m)
            if verified_config is not None:
                geometry = pycolmap.TwoViewGeometry(config=verified_config, inlier_matches=m)
                db.write_two_view_geometry(image_ids[name0], image_ids[name1], geometry)
            stats["pairs"] += 1
            stats["matches"] += len(m)
    db.close()
    if stats["images_without_keypoints"] or stats["pairs_without_matches"]:
        logger.warning(
            "%d images have no keypoints in %s and %d pairs no matches in %s (skipped: unreadable images at matching?)",
            stats["images_without_keypoints"],
            features,
            stats["pairs_without_matches"],
            matches,
        )
    return stats


def verify(
    database: Path,
    two_view_options: dict[str, Any],
    threads: int,
    seed: int,
    reference: pycolmap.Reconstruction | None = None,
) -> tuple[int, int]:
    """Geometric verification of every matched pair: RANSAC on the matches, or with a `reference`
    model, the epipolar geometry of its known poses. RANSAC draws from `seed` unless
    `two_view_options` sets ransac.random_seed, so that a rerun verifies the same inliers.
    Returns (verified pairs, inlier matches)."""
    options = pycolmap.TwoViewGeometryOptions(overlay({"ransac": {"random_seed": seed}}, two_view_options))
    if reference is None:
        pycolmap.geometric_verification(
            database, pycolmap.GeometricVerifierOptions(num_threads=threads), two_view_geometry_options=options
        )
    else:
        pycolmap.guided_geometric_verification(
            reference, database, two_view_geometry_options=options, num_threads=threads
        )
    inliers = verified_inlier_counts(database)
    return len(inliers), sum(inliers)


def verified_geometries(db: pycolmap.Database) -> Iterator[tuple[int, int, str, str, pycolmap.TwoViewGeometry]]:
    """(image_id0, image_id1, name0, name1, geometry) of every pair of an open database that passed
    geometric verification (pairs that failed it are stored too, with no inliers, and are left out);
    the inliers' column 0 indexes image_id0's keypoints."""
    names = {image.image_id: image.name for image in db.read_all_images()}
    for pair_id, geometry in zip(*db.read_two_view_geometries()):
        if len(geometry.inlier_matches):
            id0, id1 = pycolmap.pair_id_to_image_pair(pair_id)
            yield id0, id1, names[id0], names[id1], geometry


def verified_matches(database: Path) -> dict[Pair, np.ndarray]:
    """Inlier matches [K,2] (keypoint indices, column 0 into the first name's keypoints) of every
    pair that passed geometric verification, by image names."""
    db = pycolmap.Database.open(database)
    try:
        return {(a, b): np.asarray(g.inlier_matches) for _, _, a, b, g in verified_geometries(db)}
    finally:
        db.close()


def leave_out_inliers(database: Path, ambiguous: dict[str, np.ndarray]) -> int:
    """Remove from every verified pair's inliers the matches of a keypoint that `ambiguous` (name ->
    [N] bool) flags; the pair's geometry stays as estimated. Returns how many inliers went."""
    db = pycolmap.Database.open(database)
    try:
        removed = 0
        for id0, id1, name0, name1, geometry in list(verified_geometries(db)):  # read all before writing
            m = np.asarray(geometry.inlier_matches)
            keep = ~(ambiguous[name0][m[:, 0]] | ambiguous[name1][m[:, 1]])
            if not keep.all():
                removed += int((~keep).sum())
                geometry.inlier_matches = m[keep]
                db.update_two_view_geometry(id0, id1, geometry)
        return removed
    finally:
        db.close()


def camera_focal_lengths(database: Path) -> dict[int, float]:
    """Each camera's (mean) focal length in pixels as the database holds it, by camera id: where
    mapping started from."""
    db = pycolmap.Database.open(database)
    try:
        return {camera.camera_id: camera.mean_focal_length() for camera in db.read_all_cameras()}
    finally:
        db.close()


def verified_inlier_counts(database: Path) -> list[int]:
    """Inlier matches of each pair that passed geometric verification."""
    return [len(m) for m in verified_matches(database).values()]


def staging_dir(path: Path) -> Path:
    """An empty hidden folder inside `path` where a model is written before `move_model_files`."""
    tmp = Path(path) / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_model(reconstruction: pycolmap.Reconstruction, path: Path) -> None:
    """Write the model's binary files into `path`, each renamed into place once complete."""
    tmp = staging_dir(path)
    reconstruction.write(tmp)
    move_model_files(tmp, path)


MODEL_FILES = ("cameras", "images", "points3D", "rigs", "frames")  # a COLMAP model's files, .bin or .txt


def is_model(path: Path) -> bool:
    """Whether a folder holds a COLMAP model (its images file, binary or text)."""
    return (Path(path) / "images.bin").is_file() or (Path(path) / "images.txt").is_file()


def remove_model(path: Path) -> None:
    """Delete the model files in `path` (an earlier run's, which a run that builds none must not leave)."""
    for name in MODEL_FILES:
        for suffix in (".bin", ".txt"):
            (Path(path) / f"{name}{suffix}").unlink(missing_ok=True)


def move_model_files(src: Path, dst: Path) -> None:
    """Move every file of the model folder `src` into `dst` (atomic renames), then remove `src`."""
    for file in sorted(Path(src).iterdir()):
        os.replace(file, Path(dst) / file.name)
    Path(src).rmdir()


def project(
    cam_from_world: pycolmap.Rigid3d, camera: pycolmap.Camera, xyz: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Points xyz [K,3] (world frame) in a camera: their COLMAP pixels [K,2] (meaningless where the
    depth is not positive) and their depths [K]."""
    pose = cam_from_world.matrix()
    in_camera = xyz @ pose[:, :3].T + pose[:, 3]
    xy = camera.img_from_cam(in_camera, check_cheirality=False)
    return np.asarray(xy).reshape(-1, 2), in_camera[:, 2]


def model_statistics(model: pycolmap.Reconstruction) -> dict[str, float]:
    """What a summary says of a model: registered images, points, mean track length and reprojection error."""
    return {
        "registered": model.num_reg_images(),
        "points": model.num_points3D(),
        "mean_track_length": model.compute_mean_track_length(),
        "mean_reprojection_error_px": model.compute_mean_reprojection_error(),
    }


def corner_rays(camera: pycolmap.Camera) -> np.ndarray:
    """[4,2] where the rays through the image corners (top left, top right, bottom right, bottom left)
    meet the plane z = 1 of the camera frame, distortion undone: a frustum's shape. Where the
    distortion cannot be undone at the corners (a degenerate model's, e.g. k = -40), the pinhole
    rays of the same focal length and principal point."""
    w, h = camera.width, camera.height
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    rays = np.asarray(camera.cam_from_img(corners))
    if not np.isfinite(rays).all():
        K = camera.calibration_matrix()
        rays = (corners - K[:2, 2]) / np.diag(K)[:2]
    return rays


# A registered image that observes fewer of the model's points has a pose the model does not support:
# the incremental mapper registers an image on at least 30 (abs_pose_min_num_inliers), but a global
# mapper poses every image from the view graph first and keeps it however few points survive.
MIN_POINTS_PER_IMAGE = 30


def weakly_registered(reconstruction: pycolmap.Reconstruction, min_points: int = MIN_POINTS_PER_IMAGE) -> list[str]:
    """Names of the registered images that observe fewer than `min_points` of the model's 3D points."""
    return sorted(
        image.name
        for image in map(reconstruction.images.__getitem__, reconstruction.reg_image_ids())
        if image.num_points3D < min_points
    )


def describe(reconstruction: pycolmap.Reconstruction, num_images: int) -> str:
    """registered images / points / track length / reprojection error, in one line."""
    weak = weakly_registered(reconstruction)
    return (
        f"{reconstruction.num_reg_images()}/{num_images} images registered"
        + (f" ({len(weak)} of them see fewer than {MIN_POINTS_PER_IMAGE} points: poses unsupported)" if weak else "")
        + f", {reconstruction.num_points3D()} points,"
        f" mean track length {reconstruction.compute_mean_track_length():.2f},"
        f" {reconstruction.compute_mean_observations_per_reg_image():.0f} observations per image,"
        f" mean reprojection error {reconstruction.compute_mean_reprojection_error():.3f} px"
    )
