"""Scoring localization results against ground-truth poses: per query the position error (distance
between the camera centres, in the ground truth's units: metres for the benchmarks) and the rotation
error (angle of R_est R_gt^T, degrees); recall (percent of the ground-truth queries) within each
(metres, degrees) threshold, and median errors. A query without a result counts as failed (infinite
errors), so recall and medians are over every ground-truth query.

    python -m sfm_reweight.evaluate_localization --results results.txt --ground_truth gt.txt|gt_model/ \
        [--thresholds 0.25,2 0.5,5 5,10] [--result_names basename]
"""

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from . import cli
from .utils.errors import InputError
from .utils.queries import NAME_FORMATS, read_results, result_names

DEFAULT_THRESHOLDS: tuple[tuple[float, float], ...] = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))

Poses = Mapping[str, pycolmap.Rigid3d]


def pose_error(estimate: pycolmap.Rigid3d, truth: pycolmap.Rigid3d) -> tuple[float, float]:
    """(position error, rotation error in degrees) of a cam_from_world pose against the true one:
    the distance between the camera centres (world frame) and the angle of R_est R_gt^T."""
    position = np.linalg.norm(estimate.inverse().translation - truth.inverse().translation)
    return float(position), math.degrees(estimate.rotation.angle_to(truth.rotation))


def read_ground_truth(path: str | Path) -> dict[str, pycolmap.Rigid3d]:
    """Name -> cam_from_world from a results-format file or the posed images of a COLMAP model folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: ground truth not found")
    if path.is_dir():
        model = pycolmap.Reconstruction(path)
        return {image.name: image.cam_from_world() for image in model.images.values() if image.has_pose}
    return read_results(path)


def threshold_label(metres: float, degrees: float) -> str:
    return f"{metres:g}m,{degrees:g}deg"


def evaluate(
    results: str | Path | Poses,
    ground_truth: str | Path | Poses,
    thresholds: Sequence[tuple[float, float]] = DEFAULT_THRESHOLDS,
    name_format: str = "basename",
) -> dict[str, Any]:
    """Errors of `results` (a results file or name -> cam_from_world) against `ground_truth` (a
    results-format file, a COLMAP model folder, or name -> cam_from_world). Ground-truth names are
    matched to result names through `utils.queries.result_name(name, name_format)`, the rule the
    localizers write results with.

    Returns {"queries" (ground-truth queries), "localized" (of them with a result), "recall"
    (threshold label "0.25m,2deg" -> percent), "median_position_error", "median_rotation_error",
    "errors" (name -> (position, rotation), inf for no result), "unmatched_results" (result names
    with no ground truth)}."""
    estimates = read_results(results) if isinstance(results, (str, Path)) else dict(results)
    truth = read_ground_truth(ground_truth) if isinstance(ground_truth, (str, Path)) else dict(ground_truth)
    if not truth:
        raise InputError(f"{ground_truth}: no ground-truth poses")
    keys = result_names(list(truth), name_format, str(ground_truth))
    errors = {
        name: pose_error(estimates[keys[name]], pose) if keys[name] in estimates else (math.inf, math.inf)
        for name, pose in truth.items()
    }
    position, rotation = np.array(list(errors.values())).T
    recall = {threshold_label(m, d): float(100.0 * np.mean((position <= m) & (rotation <= d))) for m, d in thresholds}
    return {
        "queries": len(truth),
        "localized": int(np.isfinite(position).sum()),
        "recall": recall,
        "median_position_error": float(np.median(position)),
        "median_rotation_error": float(np.median(rotation)),
        "errors": errors,
        "unmatched_results": sorted(set(estimates) - set(keys.values())),
    }


def format_report(report: dict[str, Any]) -> str:
    """One line: localized / queries, recall at each threshold, median errors."""
    recall = " / ".join(f"{v:.1f}" for v in report["recall"].values())
    return (
        f"{report['localized']} / {report['queries']} queries localized; recall (%) at {', '.join(report['recall'])}:"
        f" {recall}; median errors {report['median_position_error']:.3g} m, {report['median_rotation_error']:.3g} deg"
    )


def parse_threshold(text: str) -> tuple[float, float]:
    metres, sep, degrees = text.partition(",")
    try:
        return float(metres), float(degrees)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'metres,degrees', got {text!r}") from None


def main(
    results: Path, ground_truth: Path, thresholds: Sequence[tuple[float, float]], name_format: str
) -> dict[str, Any]:
    report = evaluate(results, ground_truth, thresholds, name_format)
    print(format_report(report))
    return report


def command(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument(
        "--ground_truth", type=Path, required=True, help="results-format poses file or COLMAP model folder"
    )
    parser.add_argument("--thresholds", type=parse_threshold, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--result_names", choices=NAME_FORMATS, default="basename")
    args = parser.parse_args(argv)
    cli.run(
        main,
        results=args.results,
        ground_truth=args.ground_truth,
        thresholds=args.thresholds,
        name_format=args.result_names,
    )


if __name__ == "__main__":
    command()
