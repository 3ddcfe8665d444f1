"""Homography benchmark: several matchers side by side on HPatches- or Oxford-layout sequences.

    sfm-reweight homography --root DATA/oxford_affine
    sfm-reweight homography --root hpatches-sequences-release --matchers eloftr_reweight_twoview opencv_sift
    sfm-reweight homography --root DATA/sacre_coeur/mapping --layout warped \\
        --matchers eloftr_reweight_twoview opencv_sift

`--layout warped`: any folder of photos, each matched against copies of itself zoomed (--zooms) and
rotated (--rotations) about the centre (`eval/warped_photos.write_warped_photos`; views written once to
OUTPUT/views): how much zoom and rotation a matcher takes, one condition at a time. A second table
gives AUC@5px and precision per condition.

Pairs: each sequence's first image with each other image. Every matcher sees the same images
resized to the same long side (--resize, default 1024; enlarged only with --enlarge); the top --max_matches
matches by score (default 1000, the LoFTR/ELoFTR HPatches protocol; 0 keeps all) go into an
OpenCV RANSAC homography (3 px, in original pixels). Error: the mean distance of image 1's four
corner pixels mapped by the estimate and by the ground truth, in original pixels (inf without an
estimate); AUC@3/5/10 px. Precision: share of the kept matches within 3 px of the true H.

Writes `results.json` and `curves.png` to --output and prints a markdown table.
"""

import argparse
import logging
from pathlib import Path
from typing import Any

import cv2

from sfm_reweight.eval import datasets as ds
from sfm_reweight import cli
from sfm_reweight.matchers import MatcherUnavailable
from sfm_reweight.utils import atomic
from sfm_reweight.eval import benchmark
from sfm_reweight.metrics import (
    HOMOGRAPHY_THRESHOLDS_PX,
    corner_error,
    homography_precision,
    ransac_homography,
)
from sfm_reweight.eval.warped_photos import WARP_ROTATIONS, WARP_ZOOMS, write_warped_photos

logger = logging.getLogger("homography")

LAYOUTS = {"auto": ds.read_homography_dataset, "hpatches": ds.read_hpatches, "oxford": ds.read_oxford}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """AUC (%) of the corner errors, mean precision (%), matches and time per pair."""
    return benchmark.summarize_records(records, [r["corner_error"] for r in records], HOMOGRAPHY_THRESHOLDS_PX)


def table(summary: dict[str, dict[str, Any]]) -> str:
    header = [
        "matcher",
        *(f"AUC@{t:g}px" for t in HOMOGRAPHY_THRESHOLDS_PX),
        "precision %",
        "matches/pair",
        "s/pair",
        "pairs",
    ]
    rows = [
        [
            label,
            *(s[f"auc@{t:g}"] for t in HOMOGRAPHY_THRESHOLDS_PX),
            s["precision"],
            s["matches"],
            s["time_s"],
            s["pairs"],
        ]
        for label, s in summary.items()
    ]
    return benchmark.markdown_table(header, rows, digits=[0, 1, 1, 1, 1, 0, 2, 0])


def condition_table(records: dict[str, list[dict[str, Any]]]) -> str:
    """AUC@5px / precision (%) per matcher (rows) and condition (columns, in first-seen order)."""
    conditions = list(dict.fromkeys(r["condition"] for recs in records.values() for r in recs))
    rows = []
    for label, recs in records.items():
        cells = []
        for c in conditions:
            s = summarize([r for r in recs if r["condition"] == c])
            cells.append(f"{s['auc@5']:.1f} / {s['precision']:.1f}")
        rows.append([label, *cells])
    return benchmark.markdown_table(["AUC@5px / precision %", *conditions], rows)


def read_pairs(
    root: Path, layout: str, output: Path, zooms: tuple[float, ...], rotations: tuple[float, ...], max_pairs: int | None
) -> list[ds.EvalPair]:
    """The pairs of a dataset layout, or of photos warped into OUTPUT/views (layout "warped")."""
    if layout == "warped":
        return write_warped_photos(root, output / "views", zooms, rotations, max_photos=max_pairs)
    return LAYOUTS[layout](root)[:max_pairs]


def run(
    root: str | Path,
    output: str | Path,
    matchers: tuple[str, ...] = benchmark.DEFAULT_MATCHERS,
    layout: str = "auto",
    zooms: tuple[float, ...] = WARP_ZOOMS,
    rotations: tuple[float, ...] = WARP_ROTATIONS,
    options: dict[str, dict[str, Any]] | None = None,
    resize: int | None = 1024,
    enlarge: bool = False,
    max_matches: int | None = 1000,
    ransac_threshold: float = 3.0,
    max_pairs: int | None = None,
    device: str | None = None,
    seed: int = 0,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write results.json and curves.png to `output`; returns the results.
    `max_pairs`: the first N pairs, or with layout "warped" the first N photos."""
    output = Path(output)
    pairs = read_pairs(Path(root), layout, output, zooms, rotations, max_pairs or None)
    built, skipped = benchmark.build_matchers(matchers, options, device)
    if not built:
        raise MatcherUnavailable("no matcher can run here: " + "; ".join(skipped.values()))

    records: dict[str, list[dict]] = {m.label: [] for m in built}
    for result in benchmark.match_all(pairs, built, resize, skipped, enlarge, desc=Path(root).name):
        H = result.pair.H_0to1
        for label, m in result.matches.items():
            m = benchmark.top_k(m, max_matches)
            cv2.setRNGSeed(seed)
            H_est = ransac_homography(m.kpts0, m.kpts1, ransac_threshold)
            records[label].append(
                {
                    "pair": result.pair.name,
                    "condition": result.pair.image1.stem if layout == "warped" else None,
                    "matches": len(m.kpts0),
                    "time_s": m.time_s,
                    "precision": homography_precision(m.kpts0, m.kpts1, H, ransac_threshold),
                    "corner_error": corner_error(H_est, H, *result.size0),
                }
            )
    records = {m.label: records[m.label] for m in built}  # matchers dropped while running are in `skipped`
    summary = {label: summarize(r) for label, r in records.items()}

    curves = benchmark.plot_cumulative_errors(
        {label: [r["corner_error"] for r in recs] for label, recs in records.items()},
        max(HOMOGRAPHY_THRESHOLDS_PX),
        "mean corner error (px, original resolution)",
        f"{Path(root).name}: {len(pairs)} pairs, long side {resize or 'original'}{' (enlarged)' if enlarge else ''}, "
        f"top {max_matches or 'all'} matches",
        output / "curves.png",
    )
    results = {
        "benchmark": "homography",
        "root": str(root),
        "layout": layout,
        "command": command,
        "settings": {
            "resize": resize,
            "enlarge": enlarge,
            "max_matches": max_matches,
            "ransac_threshold_px": ransac_threshold,
            "seed": seed,
            "pairs": len(pairs),
            **({"zooms": list(zooms), "rotations": list(rotations)} if layout == "warped" else {}),
        },
        "matchers": {m.label: {"description": m.description, **m.info, **summary[m.label]} for m in built},
        "skipped_matchers": skipped,
        "table": table(summary) + ("\n\n" + condition_table(records) if layout == "warped" else ""),
        "curves_png": str(curves),
        "per_pair": records,
    }
    atomic.write_json(results, output / "results.json")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = benchmark.benchmark_parser(__doc__, "outputs/homography/<root name>")
    parser.add_argument("--root", type=Path, required=True, help="folder of sequence folders")
    parser.add_argument(
        "--layout",
        choices=(*LAYOUTS, "warped"),
        default="auto",
        help="hpatches, oxford, auto (per sequence), or warped (--root: a folder of photos)",
    )
    parser.add_argument(
        "--zooms",
        type=float,
        nargs="+",
        default=list(WARP_ZOOMS),
        help="warped layout: zooms of image 1 at rotation 0 (default %(default)s)",
    )
    parser.add_argument(
        "--rotations",
        type=float,
        nargs="+",
        default=list(WARP_ROTATIONS),
        help="warped layout: rotations of image 1 in degrees at zoom 1 (default %(default)s)",
    )
    parser.add_argument(
        "--max_matches", type=int, default=1000, help="keep the top N matches by score (0: all; default 1000)"
    )
    parser.add_argument("--ransac_threshold", type=float, default=3.0, help="pixels (default 3)")
    return parser.parse_args(argv)


def command(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = cli.run(
        run,
        root=args.root,
        output=args.output or Path("outputs/homography") / args.root.resolve().name,
        layout=args.layout,
        zooms=tuple(args.zooms),
        rotations=tuple(args.rotations),
        max_matches=args.max_matches or None,
        ransac_threshold=args.ransac_threshold,
        **benchmark.run_arguments(args, "homography", argv),
    )
    s = results["settings"]
    benchmark.print_report(
        results,
        f"Homography on {results['root']} ({s['pairs']} pairs, long side {s['resize'] or 'original'}, "
        f"top {s['max_matches'] or 'all'} matches, RANSAC {s['ransac_threshold_px']:g} px)",
    )


if __name__ == "__main__":
    command()
