"""Relative-pose benchmark: several matchers side by side on the same pairs, at the same resolution.

    sfm-reweight relative_pose --dataset strecha --root DATA/strecha_fountain_p11
    sfm-reweight relative_pose --dataset middlebury --root DATA/middlebury_mview
    sfm-reweight relative_pose --dataset megadepth1500 \\
        --index assets/megadepth_test_1500_scene_info --root data/megadepth/test --repeats 5
    sfm-reweight relative_pose --dataset scannet1500 --index assets/scannet_test_1500 --root data/scannet/test
    sfm-reweight relative_pose --dataset pairs --index pairs_with_gt.txt --root images/
    ... --matchers eloftr_reweight_twoview opencv_sift eloftr eloftr_reweight_full \\
        --options eloftr.model.weights=eloftr_outdoor.ckpt eloftr_reweight_full.model.weights=eloftr_outdoor.ckpt \\
        --resize 1024 --ransac lo-ransac

Protocol (LoFTR / EfficientLoFTR's evaluation): essential matrix by OpenCV
RANSAC on normalized keypoints at 0.5 px / mean focal, prob 0.99999, recoverPose per candidate;
error = max(rotation, translation direction) in degrees (inf when no pose); `--repeats 5`
shuffles the matches and runs RANSAC 5 times per pair, all errors pooled into AUC@5/10/20.
`--ransac lo-ransac` uses poselib (threshold 2 px). Precision: share of matches with squared
symmetric epipolar distance (normalized coordinates) below 5e-4, averaged over pairs. Time: the
matcher's wall time per pair on the resized images, after one warm-up call.

Writes `results.json` (settings, per-matcher summary, per-pair errors) and `curves.png`
(cumulative error curves) to --output and prints a markdown table.
"""

import argparse
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sfm_reweight.eval import datasets as ds
from sfm_reweight import cli
from sfm_reweight.matchers import MatcherUnavailable
from sfm_reweight.utils import atomic
from sfm_reweight.utils.errors import InputError
from sfm_reweight.eval import benchmark
from sfm_reweight.eval.datasets import EvalPair, intrinsics_for
from sfm_reweight.metrics import (
    POSE_THRESHOLDS_DEG,
    epipolar_precision,
    estimate_relative_pose,
    estimate_relative_pose_lo,
    pose_error,
    relative_pose_error,
)

logger = logging.getLogger("relative_pose")

DATASETS = ("megadepth1500", "scannet1500", "pairs", "strecha", "middlebury")
RANSAC_THRESHOLDS = {"ransac": 0.5, "lo-ransac": 2.0}


def load_pairs(
    dataset: str, root: Path, index: Path | None = None, max_gap: int = 3, gaps: tuple[int, ...] = (1, 2)
) -> list[EvalPair]:
    """The dataset's pairs; `index` is the npz folder (megadepth1500, scannet1500) or pairs file (pairs)."""
    if dataset in ("megadepth1500", "scannet1500", "pairs") and index is None:
        raise InputError(f"--dataset {dataset} needs --index (the npz folder or the pairs file)")
    if dataset == "megadepth1500":
        return ds.read_megadepth1500(index, root)
    if dataset == "scannet1500":
        return ds.read_scannet1500(index, root)
    if dataset == "pairs":
        return ds.read_pairs_with_gt(index, root)
    if dataset == "strecha":
        return ds.read_strecha(root, max_gap=max_gap)
    if dataset == "middlebury":
        return ds.read_middlebury(root, gaps=gaps)
    raise InputError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")


def pose_errors(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    T_0to1: np.ndarray,
    repeats: int = 1,
    ransac: str = "ransac",
    threshold_px: float | None = None,
    seed: int = 0,
) -> list[dict[str, float]]:
    """`repeats` pose estimates from the matches, each on a fresh shuffle of them (5 shuffles are
    always drawn so the random stream does not depend on `repeats`, as in ELoFTR): a list of
    {"error", "error_R", "error_t", "inliers"} (errors in degrees, inf without a pose)."""
    threshold_px = RANSAC_THRESHOLDS[ransac] if threshold_px is None else threshold_px
    rng = np.random.default_rng(seed)
    cv2.setRNGSeed(seed)
    out = []
    for r in range(max(5, repeats)):
        order = rng.permutation(len(kpts0))
        if r >= repeats:
            continue
        if ransac == "lo-ransac":
            estimate = estimate_relative_pose_lo(kpts0[order], kpts1[order], K0, K1, threshold_px)
        else:
            estimate = estimate_relative_pose(kpts0[order], kpts1[order], K0, K1, threshold_px)
        if estimate is None:
            out.append({"error": float("inf"), "error_R": float("inf"), "error_t": float("inf"), "inliers": 0})
            continue
        err_R, err_t = relative_pose_error(T_0to1, estimate[0], estimate[1])
        out.append(
            {
                "error": pose_error(T_0to1, estimate),
                "error_R": err_R,
                "error_t": err_t,
                "inliers": int(estimate[2].sum()),
            }
        )
    return out


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-matcher summary of per-pair records: AUC (%) of the pooled errors, mean precision (%),
    matches and time per pair."""
    errors = [e["error"] for r in records for e in r["estimates"]]
    return {**benchmark.summarize_records(records, errors, POSE_THRESHOLDS_DEG), "estimates": len(errors)}


def run(
    dataset: str,
    root: str | Path,
    output: str | Path,
    matchers: tuple[str, ...] = benchmark.DEFAULT_MATCHERS,
    index: str | Path | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    resize: int | None = 1024,
    enlarge: bool = False,
    repeats: int = 1,
    ransac: str = "ransac",
    ransac_threshold: float | None = None,
    max_gap: int = 3,
    gaps: tuple[int, ...] = (1, 2),
    max_pairs: int | None = None,
    device: str | None = None,
    seed: int = 0,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write results.json and curves.png to `output`; returns the results."""
    pairs = load_pairs(dataset, Path(root), None if index is None else Path(index), max_gap, gaps)
    if max_pairs:
        pairs = pairs[:max_pairs]
    if not pairs:
        raise InputError(f"no pairs in {root}")
    built, skipped = benchmark.build_matchers(matchers, options, device)
    if not built:
        raise MatcherUnavailable("no matcher can run here: " + "; ".join(skipped.values()))
    threshold = RANSAC_THRESHOLDS[ransac] if ransac_threshold is None else ransac_threshold

    records: dict[str, list[dict]] = {m.label: [] for m in built}
    for index_pair, result in enumerate(benchmark.match_all(pairs, built, resize, skipped, enlarge, desc=dataset)):
        pair = result.pair
        K0, K1 = intrinsics_for(pair, 0, result.size0), intrinsics_for(pair, 1, result.size1)
        for label, m in result.matches.items():
            estimates = pose_errors(
                m.kpts0, m.kpts1, K0, K1, pair.T_0to1, repeats, ransac, threshold, seed + index_pair
            )
            records[label].append(
                {
                    "pair": pair.name,
                    "matches": len(m.kpts0),
                    "time_s": m.time_s,
                    "precision": epipolar_precision(m.kpts0, m.kpts1, pair.T_0to1, K0, K1),
                    "estimates": estimates,
                }
            )
    records = {m.label: records[m.label] for m in built}  # matchers dropped while running are in `skipped`
    summary = {label: summarize(r) for label, r in records.items()}

    output = Path(output)
    curves = benchmark.plot_cumulative_errors(
        {label: [e["error"] for r in recs for e in r["estimates"]] for label, recs in records.items()},
        max(POSE_THRESHOLDS_DEG),
        "pose error: max(rotation, translation) (deg)",
        f"{dataset}: {len(pairs)} pairs, long side {resize or 'original'}{' (enlarged)' if enlarge else ''},"
        f" {ransac} x{repeats}",
        output / "curves.png",
    )
    results = {
        "benchmark": "relative_pose",
        "dataset": dataset,
        "root": str(root),
        "index": None if index is None else str(index),
        "command": command,
        "settings": {
            "resize": resize,
            "enlarge": enlarge,
            "repeats": repeats,
            "ransac": ransac,
            "ransac_threshold_px": threshold,
            "confidence": 0.99999,
            "epipolar_threshold": 5e-4,
            "seed": seed,
            "pairs": len(pairs),
        },
        "matchers": {m.label: {"description": m.description, **m.info, **summary[m.label]} for m in built},
        "skipped_matchers": skipped,
        "table": table(summary),
        "curves_png": str(curves),
        "per_pair": records,
    }
    atomic.write_json(results, output / "results.json")
    return results


def table(summary: dict[str, dict[str, Any]]) -> str:
    header = ["matcher", *(f"AUC@{t:g}" for t in POSE_THRESHOLDS_DEG), "precision %", "matches/pair", "s/pair", "pairs"]
    rows = [
        [label, *(s[f"auc@{t:g}"] for t in POSE_THRESHOLDS_DEG), s["precision"], s["matches"], s["time_s"], s["pairs"]]
        for label, s in summary.items()
    ]
    return benchmark.markdown_table(header, rows, digits=[0, 1, 1, 1, 1, 0, 2, 0])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = benchmark.benchmark_parser(__doc__, "outputs/relative_pose/<dataset>")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--root", type=Path, required=True, help="dataset folder (strecha, middlebury) or image root")
    parser.add_argument("--index", type=Path, help="npz folder (megadepth1500, scannet1500) or pairs file (pairs)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="RANSAC runs per pair on shuffled matches, pooled (ELoFTR: 5)"
    )
    parser.add_argument("--ransac", choices=tuple(RANSAC_THRESHOLDS), default="ransac")
    parser.add_argument("--ransac_threshold", type=float, help="pixels (default 0.5 for ransac, 2.0 for lo-ransac)")
    parser.add_argument("--max_gap", type=int, default=3, help="strecha: pairs (i, i+1..i+max_gap) (default 3)")
    parser.add_argument(
        "--gaps", type=int, nargs="+", default=[1, 2], help="middlebury: pairs (i, i+g) around the ring"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def command(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = cli.run(
        run,
        dataset=args.dataset,
        root=args.root,
        output=args.output or Path("outputs/relative_pose") / args.dataset,
        index=args.index,
        repeats=args.repeats,
        ransac=args.ransac,
        ransac_threshold=args.ransac_threshold,
        max_gap=args.max_gap,
        gaps=tuple(args.gaps),
        **benchmark.run_arguments(args, "relative_pose", argv),
    )
    s = results["settings"]
    benchmark.print_report(
        results,
        f"Relative pose on {results['dataset']} ({s['pairs']} pairs, long side {s['resize'] or 'original'}, "
        f"{s['ransac']} at {s['ransac_threshold_px']:g} px, {s['repeats']} run(s) per pair)",
    )


if __name__ == "__main__":
    command()
