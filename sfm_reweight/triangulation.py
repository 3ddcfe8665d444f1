"""Triangulation with known poses: the cameras and poses of a reference COLMAP model stay as they
are, and our features and matches make its 3D points.

    python -m sfm_reweight.triangulation --sfm_dir sfm/ --reference_model ref/ --image_dir images/ \
        --pairs pairs.txt --features feats.h5 --matches matches.h5 [--options verification=poses|ransac|none]

Writes `sfm_dir/database.db` (rebuilt on every run) and the triangulated model's `*.bin` into
`sfm_dir`.
"""

import logging
import time
from pathlib import Path
from typing import Any

import pycolmap

from . import cli, colmap
from .utils.conf import Options, overlay, resolve
from .utils.errors import InputError
from .utils.pairs import read_pairs, unique_pairs

logger = logging.getLogger(__name__)

confs: dict[str, dict[str, Any]] = {
    "default": {
        # poses: epipolar check against the known poses (pycolmap's guided verification);
        # ransac: two-view RANSAC as in reconstruction; none: trust the matches
        "verification": "poses",
        "two_view": Options(),  # TwoViewGeometryOptions
        "min_match_score": None,
        "refine_intrinsics": False,  # bundle-adjust the intrinsics after triangulation
        "mapper_options": Options(),  # IncrementalPipelineOptions (triangulation and filtering thresholds)
        "num_threads": None,
        "seed": 0,
    },
}


def main(
    conf: str | dict,
    sfm_dir: Path,
    reference_model: Path,
    image_dir: Path,
    pairs: Path,
    features: Path,
    matches: Path,
    verbose: bool = False,
) -> pycolmap.Reconstruction:
    """Triangulate the matches of `pairs` (images of the reference model) with the model's poses."""
    conf = resolve(confs, conf)
    if conf["verification"] not in ("poses", "ransac", "none"):
        raise InputError(f"unknown verification {conf['verification']!r}; expected poses, ransac or none")
    for path in (features, matches):
        if not Path(path).is_file():
            raise InputError(f"{path}: file not found")
    if not Path(reference_model).is_dir():
        raise InputError(f"{reference_model}: reference model folder not found")
    reference = pycolmap.Reconstruction(reference_model)
    names = [image.name for image in reference.images.values()]
    pair_list = unique_pairs(read_pairs(pairs, known_names=names))  # fails on unknown images first
    sfm_dir = Path(sfm_dir)  # made by new_database
    threads = colmap.num_threads(conf["num_threads"])
    start_time = time.time()

    with colmap.colmap_logging(verbose):
        database = colmap.new_database(sfm_dir / "database.db")
        image_ids = colmap.database_from_model(database, reference)
        config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED if conf["verification"] == "none" else None
        stats = colmap.import_features(
            database, image_ids, pair_list, features, matches, conf["min_match_score"], config
        )
        if conf["verification"] == "none":
            verified = stats["pairs"], stats["matches"]
        else:
            guide = reference if conf["verification"] == "poses" else None
            verified = colmap.verify(database, conf["two_view"], threads, conf["seed"], guide)
        options = overlay({"num_threads": threads, "random_seed": conf["seed"]}, conf["mapper_options"])
        tmp = colmap.staging_dir(sfm_dir)
        model = pycolmap.triangulate_points(
            reference,
            database,
            image_dir,
            tmp,
            clear_points=True,
            options=pycolmap.IncrementalPipelineOptions(options),
            refine_intrinsics=conf["refine_intrinsics"],
        )
    colmap.move_model_files(tmp, sfm_dir)
    logger.info(
        "triangulation (%s verification): %d pairs with %d matches imported, %d verified (%d inlier matches);"
        " model written to %s: %s; %.1f s.",
        conf["verification"],
        stats["pairs"],
        stats["matches"],
        verified[0],
        verified[1],
        sfm_dir,
        colmap.describe(model, len(image_ids)),
        time.time() - start_time,
    )
    return model


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv, confs)


if __name__ == "__main__":
    command()
