"""Localize InLoc queries against the database cutouts' depth (hloc's localize_inloc): the matches of
a query to each retrieved cutout are lifted to 3D with the cutout's per-pixel scan points, moved to
the world frame with the scan's alignment, and one PnP over all retrieved cutouts gives the pose.

    python -m sfm_reweight.localize_inloc --dataset_dir datasets/inloc --retrieval pairs-query-netvlad40.txt \
        --features feats.h5 --matches matches.h5 --results InLoc_results.txt [--options skip_matches=20]

Dataset layout (below `dataset_dir`; names in the pairs, features and matches files are relative to it):
    query/iphone7/IMG_*.JPG
    database/cutouts/<floor>/<scan>/<building>_cutout_<scan>_<yaw>_<pitch>.jpg   (e.g. DUC1/024/DUC_cutout_024_0_0.jpg)
    database/cutouts/.../<same>.jpg.mat   XYZcut [H,W,3]: scan-frame point of each pixel, NaN without depth
    database/alignments/<floor>/transformations/<building>_trans_<scan>.txt   lines 8-11: world_from_scan [4,4]

Query camera: SIMPLE_PINHOLE, f = long side * 28 / 36 (the iPhone 7's 28 mm-equivalent lens; 3136 px
at 4032 px), principal point at the image centre. Cutouts with fewer than `skip_matches` matches are
left out. Writes `results` (`name qw qx qy qz tx ty tz`, cam_from_world, localized queries only) and
`<results>_logs.json` as localize_sfm does, each correspondence giving the query keypoint, the cutout
(index into "db") and its keypoint. A PnP pose is accepted by localize_sfm's rule (`min_inliers`,
`min_inlier_ratio` through the cutout with most inliers, `min_inlier_cells`; the failure says which
test a query failed); a query without a pose gets no results line (no made-up pose). Unlike hloc,
query keypoints get +0.5 (COLMAP's convention, which the principal point w/2, h/2 is in).
"""

import argparse
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pycolmap
import scipy.io
from tqdm import tqdm

from . import cli
from .image_io import ImageReadError, read_image
from .io import open_h5, read_image_size, read_keypoints, read_matches
from .localize_sfm import POSE_CONF, add_hloc_flags, failed, finish, hloc_flags, solve
from .utils.conf import Options, resolve
from .utils.errors import InputError, MissingEntryError
from .utils.pairs import read_text_file
from .utils.queries import read_retrieval, result_names

logger = logging.getLogger(__name__)

confs: dict[str, dict[str, Any]] = {
    "default": {
        **POSE_CONF,
        "estimation": Options(ransac={"max_error": 48.0}),  # hloc's threshold for 4032 x 3024 queries
        "skip_matches": 20,  # cutouts with fewer matches are left out (hloc's InLoc pipeline; 0 keeps all)
        "focal_35mm": 28.0,  # query focal length, 35 mm equivalent: f = long side * focal_35mm / 36
    },
}

ALIGNMENT_ROWS = slice(7, 11)  # lines 8-11 of an alignment file: world_from_scan after the GICP refinement


def query_camera(width: int, height: int, focal_35mm: float) -> pycolmap.Camera:
    """SIMPLE_PINHOLE of a query image of `width` x `height` pixels: f = long side * focal_35mm / 36,
    principal point at the centre (COLMAP's convention: the image corner at 0)."""
    return pycolmap.Camera(
        model="SIMPLE_PINHOLE",
        width=width,
        height=height,
        params=[max(width, height) * focal_35mm / 36.0, width / 2.0, height / 2.0],
    )


def lift_keypoints(xyz: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 3D points [N,3] (frame of `xyz`) at keypoints [N,2] (x, y; pixel-centre convention: pixel
    (i, j) is xyz[j, i]) of a per-pixel point map xyz [H,W,3] (NaN where unknown), and valid [N] (bool).

    Bilinear interpolation of the pixels around the keypoint, those with zero weight ignored (a
    keypoint on a pixel centre takes that pixel); where a pixel with non-zero weight is NaN, the
    nearest pixel (round half up); invalid where that is NaN too or the keypoint is outside the
    image. Keypoints within half a pixel of the border take the border pixels' values."""
    h, w = xyz.shape[:2]
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(h - 2, 0))
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    points = np.zeros((len(keypoints), 3))
    hits_nan = np.zeros(len(keypoints), bool)
    for xi, yi, weight in (
        (x0, y0, (1 - fx) * (1 - fy)),
        (x1, y0, fx * (1 - fy)),
        (x0, y1, (1 - fx) * fy),
        (x1, y1, fx * fy),
    ):
        value = xyz[yi, xi].astype(np.float64)
        used = weight > 0
        hits_nan |= used & np.isnan(value).any(1)
        points += np.where(used[:, None], weight[:, None] * np.nan_to_num(value), 0.0)
    nearest = xyz[np.floor(y + 0.5).astype(np.int64), np.floor(x + 0.5).astype(np.int64)].astype(np.float64)
    points = np.where(hits_nan[:, None], nearest, points)
    return points, inside & np.isfinite(points).all(1)


def cutout_parts(name: str) -> tuple[str, str, str]:
    """(floor, scan, building) of a cutout name `.../<floor>/<scan>/<building>_cutout_<scan>_<yaw>_<pitch>.jpg`."""
    parts = name.split("/")
    building, sep, rest = parts[-1].partition("_cutout_")
    if len(parts) < 3 or not sep or not rest.startswith(parts[-2] + "_"):
        raise InputError(
            f"{name!r} is not an InLoc cutout name"
            " (database/cutouts/<floor>/<scan>/<building>_cutout_<scan>_<yaw>_<pitch>.jpg)"
        )
    return parts[-3], parts[-2], building


def read_alignment(path: Path) -> np.ndarray:
    """world_from_scan [4,4] from an InLoc alignment file (lines 8-11; the lines before are the
    unrefined transform and headers)."""
    if not path.is_file():
        raise InputError(f"{path}: alignment file not found")
    lines = read_text_file(path, "alignment").splitlines()
    rows = []
    for lineno in range(ALIGNMENT_ROWS.start + 1, ALIGNMENT_ROWS.stop + 1):
        tokens = lines[lineno - 1].split() if lineno <= len(lines) else []
        try:
            row = [float(t) for t in tokens]
        except ValueError:
            row = []
        if len(row) != 4 or not np.isfinite(row).all():
            raise InputError(f"{path}:{lineno}: expected a row of 4 numbers of the 4x4 scan-to-world transform")
        rows.append(row)
    transform = np.array(rows)
    if not np.allclose(transform[3], [0, 0, 0, 1]):
        raise InputError(f"{path}:{ALIGNMENT_ROWS.stop}: last row of the transform is not 0 0 0 1")
    return transform


def read_xyz(path: Path) -> np.ndarray:
    """XYZcut [H,W,3] of a cutout's `.jpg.mat` file."""
    if not path.is_file():
        raise InputError(f"{path}: cutout depth file not found")
    try:
        content = scipy.io.loadmat(path, variable_names=["XYZcut"])
    except (ValueError, OSError, NotImplementedError) as err:
        raise InputError(f"{path}: cannot be read as a MATLAB file ({cli.one_line(err)})") from None
    xyz = content.get("XYZcut")
    if xyz is None or xyz.ndim != 3 or xyz.shape[2] != 3:
        raise InputError(f"{path}: expected XYZcut of shape [H,W,3], got {None if xyz is None else xyz.shape}")
    return xyz


class Cutouts:
    """World points of cutout keypoints: XYZcut lifted at the keypoints, scan frame to world."""

    def __init__(self, dataset_dir: Path, features: h5py.File):
        self.dataset_dir = Path(dataset_dir)
        self.features = features
        self.alignment = functools.lru_cache(maxsize=None)(self._alignment)
        # consecutive queries (a walk through the building) retrieve many of the same cutouts; a full
        # XYZcut is about 46 MB (1600 x 1200 x 3 doubles), so only the last few are kept
        self.xyz = functools.lru_cache(maxsize=8)(read_xyz)

    def _alignment(self, floor: str, scan: str, building: str) -> np.ndarray:
        return read_alignment(
            self.dataset_dir / "database" / "alignments" / floor / "transformations" / f"{building}_trans_{scan}.txt"
        )

    def points(self, name: str, keypoint_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [K,3] of the cutout's keypoints `keypoint_ids` [K] and valid [K] (bool)."""
        world_from_scan = self.alignment(*cutout_parts(name))
        path = self.dataset_dir / f"{name}.mat"
        xyz = self.xyz(path)
        size = read_image_size(self.features, name)
        if size is not None and tuple(size) != (xyz.shape[1], xyz.shape[0]):
            raise InputError(f"{path}: XYZcut is {xyz.shape[1]}x{xyz.shape[0]} but the image is {size[0]}x{size[1]}")
        keypoints = read_keypoints(self.features, name)
        if len(keypoint_ids) and keypoint_ids.max() >= len(keypoints):
            raise InputError(
                f"{self.features.filename}: {name!r} has {len(keypoints)} keypoints, fewer than its matches index"
            )
        points, valid = lift_keypoints(xyz, keypoints[keypoint_ids])
        return points @ world_from_scan[:3, :3].T + world_from_scan[:3, 3], valid


def localize(
    cutouts: Cutouts,
    query: str,
    camera: pycolmap.Camera,
    keypoints: np.ndarray,
    db: Sequence[str],
    matches: h5py.File,
    conf: dict[str, Any],
) -> tuple[pycolmap.Rigid3d | None, dict[str, Any]]:
    """The pose (cam_from_world, or None) and log of one query from its retrieved cutouts `db`."""
    used, kp_ids, db_kp_ids, db_index, points = [], [], [], [], []
    num_matches = skipped = missing = 0
    for name in db:
        try:
            m, _ = read_matches(matches, query, name)
        except MissingEntryError:
            missing += 1
            continue
        if len(m) < max(conf["skip_matches"], 1):
            skipped += 1
            continue
        if m[:, 0].max() >= len(keypoints):
            raise InputError(
                f"{matches.filename}: matches of ({query!r}, {name!r})"
                f" index keypoints beyond the query's {len(keypoints)}"
            )
        world, valid = cutouts.points(name, m[:, 1])
        num_matches += len(m)
        kp_ids.append(m[valid, 0])
        db_kp_ids.append(m[valid, 1])
        points.append(world[valid])
        db_index.append(np.full(int(valid.sum()), len(used)))
        used.append(name)
    if not used:
        return None, failed(
            f"no retrieved cutout with at least skip_matches={conf['skip_matches']} matches"
            f" ({skipped} with fewer, {missing} without matches in {matches.filename})"
        )
    kp_ids, db_kp_ids, db_index = (np.concatenate(a) for a in (kp_ids, db_kp_ids, db_index))
    pose, log = solve(keypoints[kp_ids], np.concatenate(points), db_index[:, None].tolist(), used, camera, conf)
    log.update(
        db=used,
        num_matches=num_matches,
        cutouts_skipped=skipped,
        pairs_without_matches=missing,
        correspondences={
            "keypoint_ids": kp_ids.tolist(),
            "db": db_index.tolist(),
            "db_keypoint_ids": db_kp_ids.tolist(),
            "inliers": log.pop("inliers"),
        },
    )
    return pose, log


def image_size(dataset_dir: Path, features: h5py.File, name: str) -> tuple[int, int]:
    """(w, h) of an image: from the features file, else from the image file."""
    size = read_image_size(features, name)
    if size is None:
        h, w = read_image(Path(dataset_dir) / name).shape[:2]
        return w, h
    return int(size[0]), int(size[1])


def main(
    conf: str | dict,
    dataset_dir: Path,
    retrieval: Path,
    features: Path,
    matches: Path,
    results: Path,
) -> dict[str, Any]:
    """Localize every query of the retrieval pairs `retrieval` (`query cutout`) with the keypoints in
    `features` and the matches in `matches`; writes `results` and `<results>_logs.json`, returns the
    summary of localize_sfm.finish."""
    conf = resolve(confs, conf)
    if not Path(dataset_dir).is_dir():
        raise InputError(f"{dataset_dir}: dataset folder not found")
    for path in (features, matches):
        if not Path(path).is_file():
            raise InputError(f"{path}: file not found")
    retrieved = read_retrieval(retrieval)
    for db in retrieved.values():
        for name in db:
            try:
                cutout_parts(name)
            except InputError as err:
                raise InputError(f"{retrieval}: {err}") from None
    names = result_names(list(retrieved), conf["result_names"], str(retrieval))
    start_time = time.time()

    poses: dict[str, pycolmap.Rigid3d] = {}
    logs: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        ffeat, fmatch = stack.enter_context(open_h5(features)), stack.enter_context(open_h5(matches))
        cutouts = Cutouts(dataset_dir, ffeat)
        for query, db in tqdm(retrieved.items(), desc="localize_inloc", unit="query"):
            try:
                keypoints = read_keypoints(ffeat, query)
                camera = query_camera(*image_size(dataset_dir, ffeat, query), conf["focal_35mm"])
            except (MissingEntryError, ImageReadError) as err:
                logs[query] = failed(cli.one_line(err))
                continue
            pose, logs[query] = localize(cutouts, query, camera, keypoints, db, fmatch, conf)
            if pose is not None:
                poses[query] = pose
    inputs = {"dataset_dir": dataset_dir, "retrieval": retrieval, "features": features, "matches": matches}
    return finish("localize_inloc", conf, names, poses, logs, Path(results), inputs, start_time)


def command(argv: list[str] | None = None) -> None:
    def extend(parser: argparse.ArgumentParser) -> None:
        add_hloc_flags(parser)
        parser.add_argument("--skip_matches", type=int, help="hloc's flag: skip_matches=N")

    def conf_extra(args: argparse.Namespace) -> dict[str, Any]:
        skip = {} if args.skip_matches is None else {"skip_matches": args.skip_matches}
        return {**hloc_flags(args), **skip}

    cli.command(main, __doc__, argv, confs, "default", extend=extend, conf_extra=conf_extra)


if __name__ == "__main__":
    command()
