"""Query photos in, their camera poses in a map out: the map (built from photos by reconstruct.py, or
an existing model) -> retrieval -> matching -> localize_sfm, then results, a summary and a picture
per query.

    sfm-reweight localize --map_dir photos/ --query_dir queries/ --output outputs/loc
    sfm-reweight localize --map_dir photos/ --model outputs/photos/sfm \\
        --features outputs/photos/feats_matches-eloftr-reweight.h5 --query_dir queries/ --output outputs/loc
    sfm-reweight localize --map_dir fountain/map --query_dir fountain/queries \\
        --ground_truth fountain/gt_dense_cameras --output outputs/fountain-loc

Image names are paths relative to their folder (`--map_dir`, `--query_dir`), which OUTPUT/images
joins by links, so a map photo and a query photo may not share a name. Query intrinsics come from
`--ground_truth`, else `--queries` (hloc's `name MODEL w h params...` list), else the map's camera of
the same image size, else pycolmap's guess from the image (EXIF focal length or 1.2 x the long
side), with the focal length refined by the pose. Retrieval: every map image when the map has at
most `--num_loc` images, else the `--num_loc` most similar by `extract_global` (codebook learned on
the map). A query without a pose is reported as not localized, never given a made-up one; an
unreadable query photo (empty, undecodable, truncated) is reported by its path and skipped.
`--features` must be the file `--model` was built from: one made with other settings than the model
records (reconstruct.py's sfm/features.json), or whose keypoint counts are not the model's, is
refused before any work.

`--ground_truth`: Strecha `<name>.camera` files for map and query images (as reconstruct.py reads
them): the map is aligned to them by the similarity of its camera centres, and the summary gives
each query's position and rotation error and the recall at (0.25 m, 2 deg), (0.5 m, 5 deg), (5 m, 10 deg).

Writes into OUTPUT: map/ (reconstruct.py's outputs, unless --model), queries_with_intrinsics.txt,
pairs-loc.txt, queries-<map features file> (a copy of the map's features with the queries' added:
the map's own file stays as built), matches-loc.h5, results.txt (`name qw qx qy qz tx ty tz`,
cam_from_world in the map's frame), results.txt_logs.json, summary.json, queries/<name>.png (the
inlier matches of each localized query against the database image with most inliers) and report.html
(report.py: the map and the localized queries in 3D, the figures and the pictures). A run holds
OUTPUT/run.lock: a second run into OUTPUT at once is refused.
"""

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from sfm_reweight import cli, colmap, extract_global, localize_sfm, match_dense, pairs_from_retrieval, report
from sfm_reweight.ground_truth import read_strecha_camera
from sfm_reweight.evaluate_localization import DEFAULT_THRESHOLDS, evaluate
from sfm_reweight.evaluate_sfm import camera_centre_errors, read_camera_centres
from sfm_reweight.image_io import GrayImages
from sfm_reweight.io import open_h5, read_keypoints
from sfm_reweight.utils import atomic, lock
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.provenance import differences
from sfm_reweight.utils.pairs import list_images, write_pairs
from sfm_reweight.utils.queries import read_queries, read_results, write_results
from sfm_reweight.visualization import plot_matches
from sfm_reweight.pipelines.reconstruct import MODEL_FEATURES, features_record
from sfm_reweight.pipelines.reconstruct import main as reconstruct

logger = logging.getLogger(__name__)


def join_folders(root: Path, folders: list[Path]) -> None:
    """`root` holds a link to every top-level entry of each folder, so that one image root serves
    map and queries with each image's own relative name."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for entry in sorted(Path(folder).iterdir()):
            link = root / entry.name
            if link.is_symlink() and link.resolve() == entry.resolve():
                continue
            if link.exists() or link.is_symlink():
                raise InputError(
                    f"{entry}: {link} already names another image or folder (map and query names must differ)"
                )
            os.symlink(entry.resolve(), link)


def camera_line(name: str, camera: pycolmap.Camera) -> str:
    """A query-list line `name MODEL w h params...`."""
    return (
        f"{name} {camera.model.name} {camera.width} {camera.height} "
        + " ".join(f"{p:.10g}" for p in camera.params)
        + "\n"
    )


def query_cameras(
    names: list[str], image_root: Path, model: pycolmap.Reconstruction, ground_truth: Path | None, queries: Path | None
) -> tuple[dict[str, pycolmap.Camera], dict[str, str]]:
    """Each query's camera and where it came from (ground_truth, queries, map, guessed)."""
    listed = read_queries(queries) if queries is not None else {}
    map_cameras = {(c.width, c.height): c for c in model.cameras.values()}
    cameras, sources = {}, {}
    for name in names:
        gt = None if ground_truth is None else Path(ground_truth, f"{name}.camera")
        if gt is not None and gt.is_file():
            K, _, _, (w, h) = read_strecha_camera(gt)
            cameras[name] = pycolmap.Camera(
                model="PINHOLE", width=w, height=h, params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
            )
            sources[name] = "ground_truth"
        elif name in listed:
            cameras[name], sources[name] = listed[name], "queries"
        else:
            try:
                guess = pycolmap.infer_camera_from_image(str(image_root / name))
            except Exception as err:  # pycolmap raises its own errors for files it cannot read
                raise InputError(  # named as the user knows it, not by its link under OUTPUT/images
                    f"{(image_root / name).resolve()}: cannot read the image for its camera ({cli.one_line(err)})"
                ) from None
            same_size = map_cameras.get((guess.width, guess.height))
            cameras[name], sources[name] = (same_size, "map") if same_size is not None else (guess, "guessed")
    return cameras, sources


def retrieval_pairs(
    path: Path, image_root: Path, queries: list[str], db: list[str], export_dir: Path, num_loc: int
) -> list[tuple[str, str]]:
    """Each query with every database image when there are at most `num_loc`, else with its
    `num_loc` most similar (pairs_from_retrieval.from_images, the default global descriptors)."""
    if len(db) > num_loc:
        return pairs_from_retrieval.from_images(
            extract_global.DEFAULT_CONF, image_root, export_dir, path, num_loc, queries, db
        )
    pairs = [(q, d) for q in queries for d in db]
    write_pairs(path, pairs)
    return pairs


def draw_query(
    path: Path, image_root: Path, features: Path, model: pycolmap.Reconstruction, query: str, log: dict
) -> Path:
    """The inlier 2D-3D correspondences of a localized query drawn as matches to the keypoints of
    the database image with most inliers that observe the same 3D points."""
    best = log["best_db"]
    image = model.find_image_with_name(best)
    index = {p.point3D_id: k for k, p in enumerate(image.points2D) if p.has_point3D()}
    c = log["correspondences"]
    rows = [
        (kp, index[pid])
        for kp, pid, inlier in zip(c["keypoint_ids"], c["point3D_ids"], c["inliers"])
        if inlier and pid in index
    ]
    kq, kd = (np.array(x, np.int64) for x in zip(*rows)) if rows else (np.zeros(0, np.int64),) * 2
    title = f"{query}: {log['num_inliers']} inliers, {len(rows)} drawn against {best}"
    return plot_matches(
        image_root / query,
        image_root / best,
        read_keypoints(features, query)[kq],
        read_keypoints(features, best)[kd],
        path,
        title=title,
        max_lines=300,
    )


def ground_truth_errors(
    model: pycolmap.Reconstruction, results: dict[str, pycolmap.Rigid3d], queries: list[str], ground_truth: Path
) -> dict[str, Any]:
    """Errors of the localized queries against Strecha cameras, after aligning the map to them by
    the similarity of the map's camera centres (gt_from_model)."""
    alignment, gt_from_model = camera_centre_errors(model, read_camera_centres(ground_truth))
    if gt_from_model is None:
        raise InputError(f"{ground_truth}: fewer than 3 map images with ground truth: the map cannot be aligned")
    model_from_gt = pycolmap.Rigid3d(gt_from_model.rotation, gt_from_model.translation).inverse()
    estimates = {}
    for name, cam_from_model in results.items():  # the scale only moves the camera centre
        centre = gt_from_model * cam_from_model.inverse().translation
        rotation = cam_from_model.rotation * model_from_gt.rotation
        estimates[name] = pycolmap.Rigid3d(rotation, -(rotation * centre))
    truth = {}
    for name in queries:
        path = Path(ground_truth, f"{name}.camera")
        if path.is_file():
            _, R, t, _ = read_strecha_camera(path)
            truth[name] = pycolmap.Rigid3d(pycolmap.Rotation3d(R), t)
    if not truth:
        raise InputError(f"{ground_truth}: no <query name>.camera file for any query")
    scores = evaluate(estimates, truth, DEFAULT_THRESHOLDS, name_format="full")
    scores["map_alignment"] = {k: alignment[k] for k in ("common", "median", "max", "scale")}
    scores["errors"] = {n: {"position": e[0], "rotation_deg": e[1]} for n, e in scores["errors"].items()}
    return scores


def check_model_features(model: Path, reconstruction: pycolmap.Reconstruction, features: Path) -> None:
    """Refuse a features file that is not the one `model` was built from: made with other settings
    than the model records (sfm/features.json, where there is one), or with another number of
    keypoints for one of the model's registered images."""
    if not Path(features).is_file():
        raise InputError(f"{features}: features file not found")
    record = Path(model, MODEL_FEATURES)
    built_from = ""
    if record.is_file():
        stored = json.loads(record.read_text())
        built_from = f"; the model was built from {stored['features']}"
        if diff := differences(stored["made_from"], features_record(features)["made_from"]):
            raise InputError(f"{features}: made with other settings than the model {model} ({diff}){built_from}")
    with open_h5(features) as f:
        for image_id in reconstruction.reg_image_ids():
            image = reconstruction.images[image_id]
            found = len(f[image.name]["keypoints"]) if f"{image.name}/keypoints" in f else 0
            if found != image.num_points2D():
                raise InputError(
                    f"{features}: {found} keypoints for {image.name} but {image.num_points2D()} in the model {model}:"
                    f" not the features file the model was built from{built_from}"
                )


def features_for_queries(source: Path, copy: Path, loc_matches: Path) -> Path:
    """The features file the queries' keypoints are added to: a copy of the map's (whose own file
    stays as the map was built), made anew, with the query matches dropped, whenever the map's
    file is not the one copied last time (recorded beside the copy)."""
    stat = source.stat()
    origin = f"{source.resolve()} {stat.st_size} {stat.st_mtime_ns}\n"
    record = copy.with_name(copy.name + ".source")
    if not copy.exists() or not record.exists() or record.read_text() != origin:
        loc_matches.unlink(missing_ok=True)
        with atomic.atomic_path(copy) as tmp:
            shutil.copyfile(source, tmp)
        atomic.write_text(record, origin)
    return copy


def localize_groups(
    localizer: str | dict,
    reconstruction: pycolmap.Reconstruction,
    cameras: dict[str, pycolmap.Camera],
    sources: dict[str, str],
    loc_pairs: Path,
    features: Path,
    loc_matches: Path,
    results: Path,
) -> tuple[dict[str, Any], dict[str, dict]]:
    """localize_sfm for the queries with known intrinsics, and separately, with the focal length
    refined by the pose, for those whose camera is a guess; writes the merged `results` and
    `<results>_logs.json`. Returns (the summary of the runs merged, the logs by query)."""
    conf = {"name": localizer} if isinstance(localizer, str) else dict(localizer)
    conf["result_names"] = "full"  # results keyed like the images (the benchmarks' basenames may collide)
    groups = {
        "known": [n for n in cameras if sources[n] != "guessed"],
        "guessed": [n for n in cameras if sources[n] == "guessed"],
    }
    poses, logs, failed = {}, {}, {}
    for group, names in groups.items():
        if not names:
            continue
        query_list = results.with_name(f"queries-{group}.txt")
        atomic.write_text(query_list, "".join(camera_line(n, cameras[n]) for n in names))
        group_conf = (
            conf
            if group == "known"
            else {**conf, "refinement": {**conf.get("refinement", {}), "refine_focal_length": True}}
        )
        group_results = results.with_name(f"{results.stem}-{group}{results.suffix}")
        loc = localize_sfm.main(group_conf, reconstruction, query_list, loc_pairs, features, loc_matches, group_results)
        poses.update(read_results(group_results))
        logs.update(json.loads(Path(loc["logs"]).read_text())["loc"])
        failed.update(loc["failed"])
    write_results(results, poses)
    atomic.write_text(Path(f"{results}_logs.json"), json.dumps({"loc": logs}))
    return {"localized": len(poses), "failed": failed}, logs


def main(
    map_dir: Path,
    query_dir: Path,
    output: Path,
    matcher: str | dict = match_dense.DEFAULT_CONF,
    model: Path | None = None,
    features: Path | None = None,
    queries: Path | None = None,
    ground_truth: Path | None = None,
    num_loc: int = 10,
    localizer: str | dict = "default",
) -> dict[str, Any]:
    """Localize the photos of `query_dir` against the map of `map_dir`'s photos (built here, or
    `model` with its `features`), write OUTPUT's files and return the summary. `matcher`: a
    `match_dense.confs` name or a dict overlaid on one."""
    matcher = match_dense.resolve_conf(matcher)  # a bad name, key or value fails before any work
    if (model is None) != (features is None):
        raise InputError(
            "localize: --model and --features go together (the model's keypoints are in its features file)"
        )
    start = time.time()
    all_queries, map_names = list_images(query_dir), list_images(map_dir)
    if not all_queries:
        raise InputError(f"{query_dir}: no images")
    if shared := sorted(set(all_queries) & set(map_names)):
        raise InputError(f"{query_dir}: {cli.short_list(shared)} also in {map_dir} (map and query names must differ)")
    with lock.exclusive(output, folder=True):  # another run into OUTPUT is refused here
        # read here, from the user's folder, so that a bad photo is named as the user knows it
        photos = GrayImages(query_dir, "localize")
        query_names = [name for name in all_queries if photos(name) is not None]
        if not query_names:
            raise InputError(f"{query_dir}: no readable query photo ({cli.short_list(list(photos.failed))})")
        image_root = output / "images"
        join_folders(image_root, [map_dir, query_dir])
        if model is None:
            built = reconstruct(image_root, output / "map", matcher, image_list=map_names)
            model, features = output / "map" / "sfm", Path(built["features"])
        if not colmap.is_model(model):
            raise InputError(f"{model}: no map model (the map's photos were not reconstructed)")
        reconstruction = pycolmap.Reconstruction(model)
        check_model_features(model, reconstruction, Path(features))
        loc_matches = output / "matches-loc.h5"
        features = features_for_queries(Path(features), output / f"queries-{Path(features).name}", loc_matches)
        registered = sorted(reconstruction.images[i].name for i in reconstruction.reg_image_ids())

        cameras, sources = query_cameras(query_names, image_root, reconstruction, ground_truth, queries)
        intrinsics = "".join(camera_line(n, c) for n, c in cameras.items())
        atomic.write_text(output / "queries_with_intrinsics.txt", intrinsics)
        loc_pairs = output / "pairs-loc.txt"
        retrieval_pairs(loc_pairs, image_root, query_names, registered, output, num_loc)
        match_dense.main(matcher, loc_pairs, image_root, features=features, matches=loc_matches)
        results = output / "results.txt"
        loc, logs = localize_groups(
            localizer, reconstruction, cameras, sources, loc_pairs, features, loc_matches, results
        )

        pictures = output / "queries"
        shutil.rmtree(pictures, ignore_errors=True)  # an earlier run's, which this run may not replace
        for name, log in logs.items():
            if log["localized"]:
                draw_query(pictures / f"{name}.png", image_root, features, reconstruction, name, log)
        summary: dict[str, Any] = {
            "map": str(model),
            "map_images": len(map_names),
            "map_registered": len(registered),
            "matcher": matcher["name"],
            "queries": len(all_queries),
            "localized": loc["localized"],
            "failed": {**{n: f"unreadable photo: {why}" for n, why in photos.failed.items()}, **loc["failed"]},
            "intrinsics": sources,
            "inliers": {n: log["num_inliers"] for n, log in logs.items()},
            "best_db": {n: log["best_db"] for n, log in logs.items()},
        }
        if ground_truth is not None:
            summary["ground_truth_cameras"] = str(ground_truth)
            poses = read_results(results)
            # queries without a pose have infinite errors: null in strict JSON
            errors = ground_truth_errors(reconstruction, poses, query_names, ground_truth)
            summary["ground_truth"] = atomic.json_ready(errors)
        summary["seconds"] = round(time.time() - start, 1)
        atomic.write_text(output / "summary.json", json.dumps(summary, indent=2))
        logger.info("localize: %s; summary in %s", summary_line(summary), output / "summary.json")
        report.main(output)
        return summary


def summary_line(summary: dict[str, Any]) -> str:
    text = (
        f"{summary['localized']}/{summary['queries']} queries localized against {summary['map_registered']} map images"
    )
    if failed := summary["failed"]:
        text += f" (not localized: {cli.short_list(sorted(failed))})"
    if gt := summary.get("ground_truth"):
        recall = ", ".join(f"{k} {v:.0f} %" for k, v in gt["recall"].items())
        if gt["median_position_error"] is not None:
            text += (
                f"; against the ground truth: median position error {gt['median_position_error']:.4f},"
                f" rotation {gt['median_rotation_error']:.3f} deg"
            )
        text += f"; recall {recall}"
    return text


def command(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--map_dir", type=Path, required=True, help="folder of the map's photos")
    parser.add_argument("--query_dir", type=Path, required=True, help="folder of the photos to localize")
    parser.add_argument("--output", type=Path, required=True)
    cli.add_matcher_arguments(parser, match_dense.confs, match_dense.DEFAULT_CONF)
    parser.add_argument("--model", type=Path, help="an existing COLMAP model of the map's photos (with --features)")
    parser.add_argument("--features", type=Path, help="the features file that --model was built from")
    parser.add_argument("--queries", type=Path, help="query list with intrinsics (name MODEL w h params...)")
    parser.add_argument(
        "--ground_truth", type=Path, help="folder of Strecha <image name>.camera files (map and queries)"
    )
    parser.add_argument("--num_loc", type=int, default=10, help="database images retrieved per query")
    parser.add_argument("--localizer", default="default", choices=sorted(localize_sfm.confs))
    cli.run(main, **cli.pipeline_kwargs(parser.parse_args(argv)))


if __name__ == "__main__":
    command()
