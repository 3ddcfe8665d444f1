"""Structure from Motion from our features and matches files: a COLMAP database, geometric
verification, incremental (or global) mapping, the largest model written to `sfm_dir`.

    python -m sfm_reweight.reconstruction --sfm_dir sfm/ --image_dir images/ --pairs pairs.txt \
        --features feats.h5 --matches matches.h5 [--conf incremental|global|hierarchical|unambiguous] \
        [--options camera_mode=single camera_model=SIMPLE_PINHOLE camera_params=1200,640,480 refine_intrinsics=False \
                   mapper_options.ba_global_max_num_iterations=30]

Writes `sfm_dir/database.db` (rebuilt on every run), every model under `sfm_dir/models/<i>/` and
the largest one's `*.bin` into `sfm_dir`.
"""

import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from . import cli, colmap
from .io import open_h5, read_keypoints
from .track_conflicts import ambiguous_keypoints
from .utils.conf import Options, overlay, resolve
from .utils.errors import InputError
from .utils.pairs import read_image_list, read_pairs, unique_pairs

logger = logging.getLogger(__name__)

_base: dict[str, Any] = {
    "mapper": "incremental",  # incremental | global (GLOMAP, in pycolmap 4.x) | hierarchical
    "camera_mode": "auto",  # auto | single | per_folder | per_image
    "camera_model": "SIMPLE_RADIAL",  # COLMAP camera model of new cameras
    "camera_params": None,  # known intrinsics, e.g. "f,cx,cy" for SIMPLE_PINHOLE (None: from EXIF or a guess)
    "refine_intrinsics": True,  # False keeps the intrinsics fixed in bundle adjustment
    "min_match_score": None,  # drop matches scoring below this before verification
    "max_track_spread": 8.0,  # px: a keypoint is ambiguous when its track's keypoints in its photo spread further
    # leave out the verified matches of ambiguous keypoints before mapping: True, False, or "auto" (where more than
    # REPEATED_SCENE_SHARE of the keypoints are ambiguous: photos that repeat themselves)
    "drop_ambiguous": "auto",
    "skip_geometric_verification": False,  # trust the matches as they are
    "two_view": Options(ransac={"max_num_trials": 20000, "min_inlier_ratio": 0.1}),  # TwoViewGeometryOptions
    "image_options": Options(),  # more ImageReaderOptions
    "mapper_options": Options(),  # Incremental-/GlobalPipelineOptions, nested dicts allowed
    "num_threads": None,  # None: all cores up to 16
    "seed": 0,  # random seed of verification and mapping (COLMAP's threads can still vary a mapping run)
}
# Shares of ambiguous keypoints (ours, tracks of verified inliers): the main job 3 %, fountain-P11 0.4 %, a 60-view
# tour 4 % (retrieval pairs) to 13.5 % (all pairs); the courtyard of identical bays 27-36 % (SIFT's 13 %), whose
# incremental maps fold in most runs unless those matches are left out.
REPEATED_SCENE_SHARE = 0.2
# A refined focal length this many times off its start (EXIF, given, or COLMAP's guess of 1.2 x the larger side) was
# not found but drifted: on the courtyard, whose camera almost only translates, maps ended anywhere from -780 px to
# 5850 px (truth 520, start 768). The other scenes end within 0.6-2.4x of their start (Sacre Coeur's photos the widest).
FOCAL_DRIFT = 3.0
confs: dict[str, dict[str, Any]] = {
    "incremental": _base,
    "global": {**_base, "mapper": "global"},
    # Scenes of repeated elements (identical windows, tiles): always a map of what is unique, rather than a folded one
    # (the default does so where more than REPEATED_SCENE_SHARE of the keypoints are ambiguous).
    "unambiguous": {**_base, "drop_ambiguous": True},
    # incremental mapping of overlapping clusters of at most leaf_max_num_images, merged (pycolmap 4.x)
    "hierarchical": {**_base, "mapper": "hierarchical"},
}


def mapper_options(conf: dict[str, Any], threads: int) -> dict[str, Any]:
    """The pipeline options of the configured mapper as a nested dict."""
    fixed = dict.fromkeys(colmap.INTRINSICS, False)
    if conf["mapper"] in ("incremental", "hierarchical"):
        options: dict[str, Any] = {"num_threads": threads, "random_seed": conf["seed"]}
        if not conf["refine_intrinsics"]:
            options.update({f"ba_refine_{k}": v for k, v in fixed.items()})
            options["mapper"] = {"abs_pose_refine_focal_length": False, "abs_pose_refine_extra_params": False}
        if conf["mapper"] == "hierarchical":  # each cluster mapped with the incremental options
            options = {"num_threads": threads, "incremental_options": options}
    else:
        gpu = pycolmap.has_cuda
        options = {
            "num_threads": threads,
            "random_seed": conf["seed"],
            "mapper": {
                "global_positioning": {"use_gpu": gpu},
                "bundle_adjustment": {"ceres": {"use_gpu": gpu}},
            },
        }
        if not conf["refine_intrinsics"]:
            options["mapper"]["bundle_adjustment"].update({f"refine_{k}": v for k, v in fixed.items()})
    return overlay(options, conf["mapper_options"])


def drops_ambiguous(ambiguous: dict[str, np.ndarray], conf: dict[str, Any]) -> bool:
    """Whether the conf's `drop_ambiguous` leaves out the matches of the ambiguous keypoints
    (name -> [N] bool). "auto" drops them where they are more than REPEATED_SCENE_SHARE, for the
    incremental mappers (measured there; the global mapper did no better with them dropped). Logs
    the share; above REPEATED_SCENE_SHARE warns that the map may fold (matches kept) or that it
    holds what is unique (dropped by "auto")."""
    share = sum(int(f.sum()) for f in ambiguous.values()) / max(sum(len(f) for f in ambiguous.values()), 1)
    repeated = share > REPEATED_SCENE_SHARE
    auto = conf["drop_ambiguous"] == "auto"
    drop = (repeated and conf["mapper"] != "global") if auto else conf["drop_ambiguous"]
    what = (
        f"{share:.0%} of the keypoints are ambiguous (their tracks hold keypoints of their photo more than"
        f" {conf['max_track_spread']:g} px apart)"
    )
    if repeated and not drop:
        logger.warning(
            "reconstruction: %s: the photos may repeat themselves (identical windows, tiles), and maps of such"
            " scenes often fold onto the copies; drop_ambiguous=True (the mapper conf 'unambiguous') maps only"
            " what is unique.",
            what,
        )
    elif repeated and auto:
        logger.warning(
            "reconstruction: %s: the photos may repeat themselves (identical windows, tiles), so the matches of the"
            " ambiguous keypoints are left out and the map holds what is unique, perhaps not every photo"
            " (drop_ambiguous=False keeps them).",
            what,
        )
    else:
        logger.info("reconstruction: %s.", what)
    return drop


def warn_if_focal_drifted(database: Path, model: pycolmap.Reconstruction) -> None:
    """Warn when bundle adjustment moved a registered camera's focal length more than FOCAL_DRIFT
    times from where it started (the camera in `database`)."""
    start = colmap.camera_focal_lengths(database)
    drifted = {}
    for image_id in model.reg_image_ids():
        image = model.images[image_id]
        if image.camera_id not in start:  # a camera the mapper made itself: no start to compare with
            continue
        ratio = model.cameras[image.camera_id].mean_focal_length() / start[image.camera_id]
        if not 1 / FOCAL_DRIFT <= ratio <= FOCAL_DRIFT:
            drifted[image.name] = ratio
    if drifted:
        logger.warning(
            "reconstruction: the focal lengths of %d images (%s) ended at %.2g to %.2g times their start: either the"
            " start was far off (no EXIF focal length) or the photos do not pin them down (a camera that only"
            " translates does not), and then the map may be distorted or stall. Where the intrinsics are known,"
            " give them: --options camera_mode=single camera_model=SIMPLE_PINHOLE camera_params='f,cx,cy'"
            " refine_intrinsics=False.",
            len(drifted),
            cli.short_list(list(drifted)),
            min(drifted.values()),
            max(drifted.values()),
        )


def initial_pair_hint(database: Path, options: Any) -> str:
    """Why an incremental mapper found no initial pair, as far as the inlier counts tell ("" for the
    global mapper): it needs a pair with at least `init_min_num_inliers` verified inliers."""
    if not isinstance(options, pycolmap.IncrementalPipelineOptions):
        return ""
    inliers = colmap.verified_inlier_counts(database)
    needed = options.mapper.init_min_num_inliers
    if not inliers:
        return " No pair passed geometric verification: the matches are too few or wrong."
    strong = sum(n >= needed for n in inliers)
    return (
        f" Verified pairs have {int(np.median(inliers))} inliers (median, max {max(inliers)}); {strong} reach"
        f" the {needed} an initial pair needs (mapper_options.mapper.init_min_num_inliers)"
        + (
            ": the matches are too weak for these photos."
            if not strong
            else f" but no initial model came out of them (an initial pair also needs a triangulation angle of"
            f" {options.mapper.init_min_tri_angle:g} deg, mapper_options.mapper.init_min_tri_angle, and inliers"
            " that agree with one relative pose)."
        )
    )


def main(
    conf: str | dict,
    sfm_dir: Path,
    image_dir: Path,
    pairs: Path,
    features: Path,
    matches: Path,
    image_list: Path | Sequence[str] | None = None,
    verbose: bool = False,
) -> pycolmap.Reconstruction | None:
    """Reconstruct the images of `pairs` (or of `image_list`); returns the largest model, or None
    when no model could be built."""
    conf = resolve(confs, conf)
    if conf["mapper"] not in ("incremental", "global", "hierarchical"):
        raise InputError(f"unknown mapper {conf['mapper']!r}; expected incremental, global or hierarchical")
    spread = conf["max_track_spread"]
    if isinstance(spread, bool) or not (isinstance(spread, (int, float)) and spread > 0):
        raise InputError(f"reconstruction conf: max_track_spread={spread!r}; expected a distance in pixels above 0")
    for key, allowed, expected in (
        ("refine_intrinsics", (), "True or False"),
        ("drop_ambiguous", ("auto",), "True, False or 'auto'"),
    ):
        if not (isinstance(conf[key], bool) or isinstance(conf[key], str) and conf[key] in allowed):
            raise InputError(f"reconstruction conf: {key}={conf[key]!r}; expected {expected}")
    for path in (features, matches):
        if not Path(path).is_file():
            raise InputError(f"{path}: file not found")
    pair_list = unique_pairs(read_pairs(pairs, image_dir=image_dir))  # fails on unknown images first
    if image_list is not None:
        names = read_image_list(image_list) if isinstance(image_list, (str, Path)) else list(image_list)
    else:
        names = list(dict.fromkeys(n for p in pair_list for n in p))
    sfm_dir = Path(sfm_dir)  # made by new_database
    threads = colmap.num_threads(conf["num_threads"])
    start_time = time.time()

    with colmap.colmap_logging(verbose):
        database = colmap.new_database(sfm_dir / "database.db")
        image_options = {"camera_model": conf["camera_model"], **conf["image_options"]}
        if conf["camera_params"] is not None:
            params = conf["camera_params"]
            image_options["camera_params"] = params if isinstance(params, str) else ",".join(map(str, params))
        image_ids = colmap.import_images(database, image_dir, names, conf["camera_mode"], image_options)
        skip = conf["skip_geometric_verification"]
        config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED if skip else None
        stats = colmap.import_features(
            database, image_ids, pair_list, features, matches, conf["min_match_score"], config
        )
        if skip:
            verified = stats["pairs"], stats["matches"]
        else:
            verified = colmap.verify(database, conf["two_view"], threads, conf["seed"])
        logger.info(
            "reconstruction: %d of %d pairs verified (%d inlier matches).", verified[0], stats["pairs"], verified[1]
        )
        with open_h5(features) as f:
            keypoints = {name: read_keypoints(f, name) for name in image_ids if name in f}
        ambiguous = ambiguous_keypoints(keypoints, colmap.verified_matches(database), spread)
        if drops_ambiguous(ambiguous, conf):
            logger.info(
                "reconstruction: %d inlier matches of ambiguous keypoints left out.",
                colmap.leave_out_inliers(database, ambiguous),
            )

        models_dir = sfm_dir / "models"
        shutil.rmtree(models_dir, ignore_errors=True)  # models of an earlier run
        models_dir.mkdir()
        options = mapper_options(conf, threads)
        if conf["mapper"] == "incremental":
            options = pycolmap.IncrementalPipelineOptions(options)
            models = pycolmap.incremental_mapping(database, image_dir, models_dir, options)
        elif conf["mapper"] == "hierarchical":
            options = pycolmap.HierarchicalPipelineOptions(options)
            models = pycolmap.hierarchical_mapping(database, image_dir, models_dir, options)
        else:
            models = pycolmap.global_mapping(database, image_dir, models_dir, pycolmap.GlobalPipelineOptions(options))

    if not models:
        colmap.remove_model(sfm_dir)  # an earlier run's model would pass for this run's
        logger.error(
            "reconstruction: no model could be built from %d images and %d verified pairs (%s).%s",
            len(image_ids),
            verified[0],
            sfm_dir,
            initial_pair_hint(database, options),
        )
        return None
    largest = max(models.values(), key=lambda r: r.num_reg_images())
    colmap.write_model(largest, sfm_dir)
    warn_if_focal_drifted(database, largest)
    registered = {largest.images[i].name for i in largest.reg_image_ids()}
    unregistered = [n for n in image_ids if n not in registered]
    logger.info(
        "reconstruction (%s): %d images imported, %d pairs with %d matches, %d verified; %d models, the largest"
        " written to %s: %s%s; %.1f s.",
        conf["mapper"],
        len(image_ids),
        stats["pairs"],
        stats["matches"],
        verified[0],
        len(models),
        sfm_dir,
        colmap.describe(largest, len(image_ids)),
        f" (not registered: {cli.short_list(unregistered)})" if unregistered else "",
        time.time() - start_time,
    )
    return largest


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv, confs, "incremental")


if __name__ == "__main__":
    command()
