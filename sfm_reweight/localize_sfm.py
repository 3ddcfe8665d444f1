"""Localize query images against an SfM model (hloc's localize_sfm): the matches of each query to its
retrieved database images give 2D-3D correspondences through the database keypoints that observe a
3D point of the model, and PnP (LO-RANSAC, then refinement; pycolmap) gives the query's pose.

    python -m sfm_reweight.localize_sfm --reference_sfm sfm/ --queries 'queries/*_with_intrinsics.txt' \
        --retrieval pairs-loc.txt --features feats.h5 --matches matches-loc.h5 --results results.txt \
        [--conf default|covisibility] [--ransac_thresh 12] [--options min_inliers=15 result_names=basename]

Writes `results` (`name qw qx qy qz tx ty tz`, cam_from_world, one line per localized query) and
`<results>_logs.json`: the configuration and inputs, and per query whether it was localized or why
not, its pose, the database images used, the number of matches, 2D-3D correspondences and inliers,
the inliers each database image vouches for (the best database image has the most), the inlier
ratios and spread that the acceptance rule reads, and every correspondence (query keypoint index,
3D point id, the database images that vouch for it, inlier).

Acceptance: RANSAC returns a pose whenever a few correspondences agree, and a photo of another place
gets a few tens of chance correspondences from a semi-dense matcher, of which PnP makes 5-20 agree.
A PnP pose is taken only with at least `min_inliers` inliers, at least `min_inlier_ratio` of the
2D-3D correspondences through the best database image being inliers ("best_db_inlier_ratio"; the
ratio over all of them, "inlier_ratio", is logged too: wrong retrieved images dilute it), and
inliers in at least `min_inlier_cells` of the cells of an 8 x 8 grid over the query image
("inlier_cells"; chance inliers crowd into a few). Queries of the map have hundreds to thousands of
inliers, nearly all of their correspondences, spread over what the map sees of them
(benchmarks/unrelated_queries.py). A rejected query's failure says which test failed, e.g.
"rejected: inlier ratio 0.24 < min_inlier_ratio=0.5 (through the best database image, ...)".

Unlike hloc, a query that cannot be localized (no retrieved images, no keypoints or matches, PnP
fails, its pose is not accepted) gets no results line and is reported as failed; hloc writes the
pose of its top retrieved image instead, which a benchmark counts as an answer.

The database keypoints are the model's points2D: the model must have been built (reconstruction,
triangulation) from the features file the matches refer to, which keeps each image's keypoint order.
Where `features` (or `features_ref`) holds a database image, its keypoint count is checked against
the model's.
"""

import argparse
import contextlib
import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pycolmap
from tqdm import tqdm

from . import cli
from .io import open_h5, read_keypoints, read_matches
from .utils import atomic
from .utils.conf import Options, overlay, resolve
from .utils.errors import InputError, MissingEntryError
from .utils.queries import pose_values, read_queries, read_retrieval, result_names, write_results

logger = logging.getLogger(__name__)

# the pose estimation settings localize_inloc shares
POSE_CONF: dict[str, Any] = {
    "estimation": Options(ransac={"max_error": 12.0}),  # AbsolutePoseEstimationOptions (max_error in px)
    "refinement": Options(),  # AbsolutePoseRefinementOptions
    # RANSAC returns a pose whenever a few correspondences agree: hundreds of random ones reach 5-7
    # inliers at 12 px in a 1280 x 960 image, so a pose needs more to count as localized
    "min_inliers": 15,
    # and a photo of another place keeps 5-20 chance inliers from a small share of its correspondences,
    # crowded into a few cells of its image, where a query of the map keeps hundreds to thousands,
    # nearly all, spread over what the map sees (benchmarks/unrelated_queries.py; module docstring)
    "min_inlier_ratio": 0.5,  # inliers / 2D-3D correspondences through best_db
    "min_inlier_cells": 0.1,  # share of the SPREAD_GRID x SPREAD_GRID cells of the query holding an inlier
    "result_names": "basename",  # basename | camera | full (utils/queries.result_name)
    "seed": 0,  # RANSAC seed of every query (unless estimation.ransac.random_seed is set): reruns agree
}
SPREAD_GRID = 8  # inlier_spread's grid: 8 x 8 cells over the query image
NO_STATS = {"inlier_ratio": None, "best_db_inlier_ratio": None, "inlier_cells": None, "inlier_hull": None}

confs: dict[str, dict[str, Any]] = {
    "default": {**POSE_CONF, "covisibility_clustering": False},
    # PnP per group of retrieved images that share 3D points, the group with most inliers wins
    "covisibility": {**POSE_CONF, "covisibility_clustering": True},
}


def estimate_pose(
    keypoints: np.ndarray, points3D: np.ndarray, camera: pycolmap.Camera, conf: dict[str, Any]
) -> dict[str, Any] | None:
    """cam_from_world of a query camera from 2D-3D correspondences: keypoints [M,2] (query pixels,
    pixel-centre convention) and points3D [M,3] (world frame). Returns pycolmap's
    {"cam_from_world": Rigid3d, "num_inliers", "inlier_mask" [M]}, or None when RANSAC finds no pose."""
    if len(keypoints) < 3:  # P3P's minimal set
        return None
    estimation = pycolmap.AbsolutePoseEstimationOptions(
        overlay({"ransac": {"random_seed": conf["seed"]}}, conf["estimation"])
    )
    refinement = pycolmap.AbsolutePoseRefinementOptions(conf["refinement"])
    return pycolmap.estimate_and_refine_absolute_pose(
        np.asarray(keypoints, np.float64) + 0.5,  # COLMAP's convention: the corner of the image at 0
        np.asarray(points3D, np.float64),
        camera,
        estimation,
        refinement,
    )


def solve(
    keypoints: np.ndarray,
    points3D: np.ndarray,
    vouchers: Sequence[Sequence[int]],
    db: Sequence[str],
    camera: pycolmap.Camera,
    conf: dict[str, Any],
) -> tuple[pycolmap.Rigid3d | None, dict[str, Any]]:
    """The pose of a query (None when it cannot be localized) from its 2D-3D correspondences
    (`estimate_pose`), each vouched for by the database images `vouchers[i]` (indices into `db`),
    and its log: "localized", "failure" (why not, or None), "cam_from_world" (qw qx qy qz tx ty tz
    or None), "num_correspondences", "num_inliers", "inliers_per_db" (db name -> inlier
    correspondences it vouches for), "best_db" (the most), "inlier_ratio" (num_inliers over
    num_correspondences), "best_db_inlier_ratio" (the same through best_db), "inlier_cells" and
    "inlier_hull" (`inlier_spread`), "inliers" [M] (bool). The pose is None unless `rejection`
    accepts it."""
    log: dict[str, Any] = {
        "localized": False,
        "failure": None,
        "cam_from_world": None,
        "num_correspondences": len(keypoints),
        "num_inliers": 0,
        "inliers_per_db": {},
        "best_db": None,
        **NO_STATS,
        "inliers": [],
    }
    if len(keypoints) == 0:
        log["failure"] = "no 2D-3D correspondences"
        return None, log
    ret = estimate_pose(keypoints, points3D, camera, conf)
    if ret is None:
        log["failure"] = f"PnP found no pose from {len(keypoints)} correspondences"
        return None, log
    inliers = np.asarray(ret["inlier_mask"], bool)
    votes = Counter(db[i] for k in np.flatnonzero(inliers) for i in vouchers[k])
    log.update(
        num_inliers=int(ret["num_inliers"]),
        inliers=inliers.tolist(),
        inliers_per_db={name: votes[name] for name in db if votes[name]},
        best_db=max(votes, key=votes.__getitem__) if votes else None,
        **inlier_spread(keypoints[inliers], camera.width, camera.height),
    )
    best = db.index(log["best_db"]) if log["best_db"] is not None else None
    log.update(
        inlier_ratio=log["num_inliers"] / len(keypoints),
        best_db_inlier_ratio=0.0 if best is None else votes[db[best]] / sum(best in v for v in vouchers),
    )
    if reason := rejection(log, conf):
        log["failure"] = reason
        return None, log
    log.update(localized=True, cam_from_world=pose_values(ret["cam_from_world"]))
    return ret["cam_from_world"], log


def inlier_spread(keypoints: np.ndarray, width: int, height: int) -> dict[str, float]:
    """How much of a query image of `width` x `height` pixels its inlier keypoints [K,2] span:
    "inlier_cells", the share of the cells of a SPREAD_GRID x SPREAD_GRID grid over the image that hold
    one, and "inlier_hull", the area of their convex hull over the image's."""
    if not len(keypoints) or width <= 0 or height <= 0:
        return {"inlier_cells": 0.0, "inlier_hull": 0.0}
    xy = np.asarray(keypoints, np.float64)
    cx = np.clip((xy[:, 0] + 0.5) * SPREAD_GRID // width, 0, SPREAD_GRID - 1)
    cy = np.clip((xy[:, 1] + 0.5) * SPREAD_GRID // height, 0, SPREAD_GRID - 1)
    cells = len(np.unique(cy * SPREAD_GRID + cx)) / SPREAD_GRID**2
    hull = cv2.contourArea(cv2.convexHull(xy.astype(np.float32))) if len(xy) >= 3 else 0.0
    return {"inlier_cells": float(cells), "inlier_hull": float(hull) / (width * height)}


def rejection(log: dict[str, Any], conf: dict[str, Any]) -> str | None:
    """Why the PnP pose of a query (`solve`'s log) is not taken as its pose (the first test it fails
    of min_inliers, min_inlier_ratio, min_inlier_cells), or None when it is."""
    if log["num_inliers"] < conf["min_inliers"]:
        return f"{log['num_inliers']} inliers, fewer than min_inliers={conf['min_inliers']}"
    if log["best_db_inlier_ratio"] < conf["min_inlier_ratio"]:
        return (
            f"rejected: inlier ratio {log['best_db_inlier_ratio']:.2f} < min_inlier_ratio={conf['min_inlier_ratio']:g}"
            f" (through the best database image, {log['best_db']}; {log['num_inliers']} inliers of"
            f" {log['num_correspondences']} correspondences in all)"
        )
    if log["inlier_cells"] < conf["min_inlier_cells"]:
        cells = round(log["inlier_cells"] * SPREAD_GRID**2)
        return (
            f"rejected: inliers in {log['inlier_cells']:.2f} of the query image ({cells} of its"
            f" {SPREAD_GRID}x{SPREAD_GRID} cells) < min_inlier_cells={conf['min_inlier_cells']:g}"
            f" ({log['num_inliers']} inliers)"
        )
    return None


def failed(reason: str, **fields: Any) -> dict[str, Any]:
    """The log (as `solve` makes it) of a query that failed before any PnP."""
    return {
        "localized": False,
        "failure": reason,
        "cam_from_world": None,
        "db": [],
        "num_matches": 0,
        "num_correspondences": 0,
        "num_inliers": 0,
        "inliers_per_db": {},
        "best_db": None,
        **NO_STATS,
        **fields,
    }


def finish(
    stage: str,
    conf: dict[str, Any],
    names: dict[str, str],
    poses: dict[str, pycolmap.Rigid3d],
    logs: dict[str, dict[str, Any]],
    results: Path,
    inputs: dict[str, Any],
    start_time: float,
) -> dict[str, Any]:
    """Write the results (the localized queries, under their result names `names[query]`) and
    `<results>_logs.json`, log the summary and return it: {"queries", "localized", "failed"
    (name -> reason), "median_inliers", "results", "logs"}."""
    write_results(results, {names[q]: poses[q] for q in names if q in poses})
    logs_path = Path(f"{results}_logs.json")
    content = {"stage": stage, "conf": conf, **{k: str(v) for k, v in inputs.items()}, "loc": logs}
    atomic.write_text(logs_path, json.dumps(content))
    failures = {q: logs[q]["failure"] for q in names if q not in poses}
    inliers = [logs[q]["num_inliers"] for q in poses]
    median = float(np.median(inliers)) if inliers else None
    examples = "; ".join(f"{q}: {why}" for q, why in list(failures.items())[:3])
    logger.info(
        "%s: localized %d / %d queries, median inliers %s%s; results written to %s, logs to %s; %.1f s.",
        stage,
        len(poses),
        len(names),
        "-" if median is None else f"{median:g}",
        f"; {len(failures)} failed (e.g. {examples})" if failures else "",
        results,
        logs_path,
        time.time() - start_time,
    )
    return {
        "queries": len(names),
        "localized": len(poses),
        "failed": failures,
        "median_inliers": median,
        "results": Path(results),
        "logs": logs_path,
    }


class ModelKeypoints:
    """The 3D points of a model's images' keypoints, and the keypoint counts checked against the
    features files that hold the database images."""

    def __init__(self, reconstruction: pycolmap.Reconstruction, features: Sequence[h5py.File]):
        self.reconstruction = reconstruction
        self.features = features
        self.point_ids = functools.lru_cache(maxsize=1024)(self._point_ids)

    def _point_ids(self, image_id: int) -> np.ndarray:
        """[N] int64: the 3D point id of each keypoint of the image, -1 where it has none."""
        image = self.reconstruction.images[image_id]
        ids = np.array([p.point3D_id if p.has_point3D() else -1 for p in image.points2D], np.int64)
        for f in self.features:
            if image.name in f and len(f[image.name]["keypoints"]) != len(ids):
                raise InputError(
                    f"{f.filename}: {image.name!r} has {len(f[image.name]['keypoints'])} keypoints"
                    f" but {len(ids)} in the"
                    " model: the model was not built from these features"
                )
        return ids


def covisibility_clusters(reconstruction: pycolmap.Reconstruction, image_ids: Sequence[int]) -> list[list[int]]:
    """The images `image_ids` grouped into connected components of the graph in which two images are
    linked when they observe a common 3D point; largest first, members in the given order."""
    parent = {i: i for i in image_ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen_by: dict[int, int] = {}  # 3D point -> the first image observing it
    for image_id in image_ids:
        for point2D in reconstruction.images[image_id].points2D:
            if point2D.has_point3D():
                other = seen_by.setdefault(point2D.point3D_id, image_id)
                parent[root(image_id)] = root(other)
    clusters: dict[int, list[int]] = {}
    for image_id in image_ids:
        clusters.setdefault(root(image_id), []).append(image_id)
    return sorted(clusters.values(), key=len, reverse=True)


def correspondences(
    model: ModelKeypoints,
    query: str,
    num_keypoints: int,
    db_ids: Sequence[int],
    matches: h5py.File,
) -> tuple[np.ndarray, np.ndarray, list[list[int]], dict[str, int]]:
    """2D-3D correspondences of a query through its matches to the database images `db_ids`: one per
    distinct (query keypoint, 3D point), so a keypoint matched to several 3D points gives several.
    Returns query keypoint indices [M], 3D point ids [M], the indices into `db_ids` of the images
    vouching for each, and {"num_matches" (to keypoints with a 3D point), "pairs_without_matches"}."""
    keypoint_ids, point_ids, db_index = [], [], []
    stats = {"num_matches": 0, "pairs_without_matches": 0}
    for i, db_id in enumerate(db_ids):
        name = model.reconstruction.images[db_id].name
        try:
            m, _ = read_matches(matches, query, name)
        except MissingEntryError:
            stats["pairs_without_matches"] += 1
            continue
        ids = model.point_ids(db_id)
        if len(m) and (m[:, 0].max() >= num_keypoints or m[:, 1].max() >= len(ids)):
            raise InputError(
                f"{matches.filename}: matches of ({query!r}, {name!r})"
                f" index keypoints beyond the {num_keypoints} of the query"
                f" or the {len(ids)} of the database image in the model"
            )
        m = m[ids[m[:, 1]] >= 0]
        stats["num_matches"] += len(m)
        keypoint_ids.append(m[:, 0])
        point_ids.append(ids[m[:, 1]])
        db_index.append(np.full(len(m), i))
    if not keypoint_ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), [], stats
    pairs = np.stack([np.concatenate(keypoint_ids), np.concatenate(point_ids)], -1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    vouchers: list[list[int]] = [[] for _ in unique]
    for k, i in zip(inverse.ravel(), np.concatenate(db_index)):
        vouchers[k].append(int(i))
    return unique[:, 0], unique[:, 1], vouchers, stats


def localize(
    model: ModelKeypoints,
    query: str,
    camera: pycolmap.Camera,
    keypoints: np.ndarray,
    db_ids: Sequence[int],
    matches: h5py.File,
    conf: dict[str, Any],
) -> tuple[pycolmap.Rigid3d | None, dict[str, Any]]:
    """The pose (cam_from_world, or None) and log of one query from its retrieved database images."""
    kp_ids, p3d_ids, vouchers, stats = correspondences(model, query, len(keypoints), db_ids, matches)
    db = [model.reconstruction.images[i].name for i in db_ids]
    points3D = np.array([model.reconstruction.points3D[p].xyz for p in p3d_ids]).reshape(-1, 3)
    pose, log = solve(keypoints[kp_ids], points3D, vouchers, db, camera, conf)
    if not stats["num_matches"]:
        missing = stats["pairs_without_matches"]
        log["failure"] = "no matches to database keypoints with a 3D point" + (
            f" ({missing} of {len(db)} pairs not in {matches.filename})" if missing else ""
        )
    log.update(
        db=db,
        **stats,
        correspondences={
            "keypoint_ids": kp_ids.tolist(),
            "point3D_ids": p3d_ids.tolist(),
            "db": vouchers,
            "inliers": log.pop("inliers"),
        },
    )
    return pose, log


def localize_clusters(
    model: ModelKeypoints,
    query: str,
    camera: pycolmap.Camera,
    keypoints: np.ndarray,
    db_ids: Sequence[int],
    matches: h5py.File,
    conf: dict[str, Any],
) -> tuple[pycolmap.Rigid3d | None, dict[str, Any]]:
    """`localize` per covisibility cluster of the retrieved images; the pose of the cluster with the
    most inliers among those whose pose is accepted (`rejection`), else the log of the one with the
    most inliers. The log is that cluster's (the largest cluster's when PnP fails in every one),
    with "clusters" (db, num_correspondences, num_inliers, failure of each) and "best_cluster"."""
    results = [
        localize(model, query, camera, keypoints, ids, matches, conf)
        for ids in covisibility_clusters(model.reconstruction, db_ids)
    ]
    # ties: the larger cluster
    best = max(range(len(results)), key=lambda i: (results[i][0] is not None, results[i][1]["num_inliers"]))
    if not results[best][1]["num_inliers"]:  # PnP failed in every cluster
        best = None
    pose, log = results[0 if best is None else best]
    log = {
        **log,
        "best_cluster": best,
        "clusters": [{k: c[k] for k in ("db", "num_correspondences", "num_inliers", "failure")} for _, c in results],
    }
    return pose, log


def main(
    conf: str | dict,
    reference_sfm: Path | pycolmap.Reconstruction,
    queries: Path | str,
    retrieval: Path,
    features: Path,
    matches: Path,
    results: Path,
    features_ref: Path | None = None,
) -> dict[str, Any]:
    """Localize the queries of `queries` (query list with intrinsics, or a glob of them) against the
    model `reference_sfm` with the retrieval pairs `retrieval` (`query db`) and the query keypoints
    in `features` (`features_ref`: another features file holding database images, checked against
    the model); writes `results` and `<results>_logs.json`, returns the summary of `finish`."""
    conf = resolve(confs, conf)
    for path in (features, matches) + ((features_ref,) if features_ref is not None else ()):
        if not Path(path).is_file():
            raise InputError(f"{path}: file not found")
    query_cameras = read_queries(queries)
    names = result_names(list(query_cameras), conf["result_names"], str(queries))
    retrieved = read_retrieval(retrieval)
    unknown_queries = [q for q in retrieved if q not in query_cameras]
    if len(unknown_queries) == len(retrieved):
        raise InputError(f"{retrieval}: none of its queries is in the query list {queries}")
    if unknown_queries:  # hloc's shipped Aachen pairs list more queries than the lists with intrinsics
        logger.warning(
            "%d queries of %s have no intrinsics in %s and are ignored: %s",
            len(unknown_queries),
            retrieval,
            queries,
            cli.short_list(unknown_queries),
        )

    if isinstance(reference_sfm, pycolmap.Reconstruction):
        reconstruction = reference_sfm
    elif Path(reference_sfm).is_dir():
        reconstruction = pycolmap.Reconstruction(reference_sfm)
    else:
        raise InputError(f"{reference_sfm}: model folder not found")
    db_ids = {image.name: image_id for image_id, image in reconstruction.images.items() if image.has_pose}
    retrieved_db = {n for q, db in retrieved.items() if q in query_cameras for n in db}
    unknown_db = sorted(retrieved_db - set(db_ids))
    if len(unknown_db) == len(retrieved_db):
        raise InputError(
            f"{retrieval}: none of the retrieved database images is a registered image of the model {reference_sfm}"
        )
    if unknown_db:
        logger.warning(
            "%d retrieved images of %s are not registered in the model and are dropped: %s",
            len(unknown_db),
            retrieval,
            cli.short_list(unknown_db),
        )
    start_time = time.time()

    poses: dict[str, pycolmap.Rigid3d] = {}
    logs: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        ffeat, fmatch = stack.enter_context(open_h5(features)), stack.enter_context(open_h5(matches))
        ref_files = [stack.enter_context(open_h5(features_ref))] if features_ref is not None else []
        model = ModelKeypoints(reconstruction, [ffeat, *ref_files])
        for query, camera in tqdm(query_cameras.items(), desc="localize_sfm", unit="query"):
            ids = [db_ids[n] for n in retrieved.get(query, []) if n in db_ids]
            if not ids:
                logs[query] = failed("no retrieved images in the model")
                continue
            try:
                keypoints = read_keypoints(ffeat, query)
            except MissingEntryError:
                logs[query] = failed(f"no keypoints in {features}")
                continue
            localizer = localize_clusters if conf["covisibility_clustering"] else localize
            pose, logs[query] = localizer(model, query, camera, keypoints, ids, fmatch, conf)
            if pose is not None:
                poses[query] = pose
    inputs = {
        "reference_sfm": "<in memory>" if isinstance(reference_sfm, pycolmap.Reconstruction) else reference_sfm,
        "queries": queries,
        "retrieval": retrieval,
        "features": features,
        "matches": matches,
    }
    return finish("localize_sfm", conf, names, poses, logs, Path(results), inputs, start_time)


def add_hloc_flags(parser: argparse.ArgumentParser) -> None:
    """hloc's localization flags, accepted as they are in hloc's command lines (folded into the conf
    by `hloc_flags`)."""
    parser.add_argument("--ransac_thresh", type=float, help="hloc's flag: estimation.ransac.max_error (pixels)")
    parser.add_argument(
        "--prepend_camera_name",
        action="store_const",
        const="camera",
        dest="result_names",
        help="hloc's flag: result_names=camera",
    )


def hloc_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The conf overrides of `add_hloc_flags`' flags (and hloc's --covisibility_clustering where given)."""
    conf: dict[str, Any] = {}
    if args.ransac_thresh is not None:
        conf["estimation"] = {"ransac": {"max_error": args.ransac_thresh}}
    if args.result_names is not None:
        conf["result_names"] = args.result_names
    if getattr(args, "covisibility_clustering", False):
        conf["covisibility_clustering"] = True
    return conf


def command(argv: list[str] | None = None) -> None:
    def extend(parser: argparse.ArgumentParser) -> None:
        add_hloc_flags(parser)
        parser.add_argument(
            "--covisibility_clustering", action="store_true", help="hloc's flag: covisibility_clustering=True"
        )

    help = {
        "queries": "query list with intrinsics, or a glob of them",
        "features_ref": "database keypoints, if not in --features",
    }
    cli.command(main, __doc__, argv, confs, "default", help=help, extend=extend, conf_extra=hloc_flags)


if __name__ == "__main__":
    command()
