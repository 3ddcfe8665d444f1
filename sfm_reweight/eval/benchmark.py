"""Shared machinery of the relative-pose and homography benchmarks (sfm_reweight/eval/relative_pose.py,
sfm_reweight/eval/homography.py): build the matchers, match every pair with every matcher on the same
pixels, and report (markdown table, JSON, cumulative error curves).

Matchers are chosen by their names in `match_dense.confs`, as everywhere (e.g. `--matchers
eloftr_reweight_twoview opencv_sift`), with `--options NAME.KEY=VALUE` overrides of a matcher's
conf (e.g. `eloftr.model.weights=eloftr_outdoor.ckpt`). Per pair, the images are read once, turned
upright (`EvalPair.rotation*`), converted to float [0,1] gray or RGB, and handed to every matcher
through `match_resized` (same long side for all); keypoints come back in the stored images' pixels,
so the ground truth applies as given.
"""

import argparse
import logging
import math
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from .. import cli, match_dense
from ..image_io import ImageReadError, to_float_image
from ..matchers import MatcherUnavailable, PairMatcher, load
from ..matchers.base import resize_long_side
from ..preprocessing import rot90_points, to_original
from ..utils import atomic
from ..utils.errors import InputError
from .datasets import EvalPair, read_pair_images, upright_image
from ..metrics import error_auc

logger = logging.getLogger(__name__)


DEFAULT_MATCHERS = ("eloftr_reweight_twoview", "opencv_sift", "aliked_lightglue", "disk_lightglue")


@dataclass
class Matches:
    """Matches of one pair in original-image pixels (integer pixel centres), and the matcher's time."""

    kpts0: np.ndarray  # [M,2] float32
    kpts1: np.ndarray  # [M,2] float32
    scores: np.ndarray  # [M] float32, higher is better
    time_s: float  # wall time of `match` on the resized images


def benchmark_parser(doc: str, output_default: str) -> argparse.ArgumentParser:
    """The arguments every benchmark pipeline shares (output, matchers and their settings, pairs
    limit, device, seed); `doc` is the script's docstring."""
    parser = cli.parser(doc)
    parser.add_argument("--output", type=Path, help=f"output folder (default {output_default})")
    parser.add_argument(
        "--matchers",
        nargs="+",
        default=list(DEFAULT_MATCHERS),
        choices=list(match_dense.confs),
        metavar="NAME",
        help="matchers by their match_dense conf names; default: %(default)s",
    )
    cli.add_options(
        parser,
        "--options",
        "settings of a matcher's conf, e.g. eloftr.model.weights=eloftr_outdoor.ckpt",
        "NAME.KEY=VALUE",
    )
    parser.add_argument(
        "--resize", type=int, default=1024, help="long side every matcher sees (0: original; default 1024)"
    )
    parser.add_argument(
        "--enlarge", action="store_true", help="also enlarge smaller images to --resize (default: only shrink)"
    )
    parser.add_argument("--max_pairs", type=int, help="evaluate only the first N pairs")
    parser.add_argument("--device", help="torch device (default cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run_arguments(args: argparse.Namespace, name: str, argv: list[str] | None) -> dict[str, Any]:
    """Keyword arguments of a benchmark's `run` from the options `benchmark_parser` adds (but
    --output, whose default is the benchmark's), and `command`: benchmark `name`'s command line, for results.json."""
    return {
        "matchers": tuple(args.matchers),
        "options": cli.parse_options(args.options),
        "resize": args.resize or None,
        "enlarge": args.enlarge,
        "max_pairs": args.max_pairs,
        "device": args.device,
        "seed": args.seed,
        "command": shlex.join(["sfm-reweight", name, *(sys.argv[1:] if argv is None else argv)]),
    }


def build_matchers(
    names: Sequence[str], options: dict[str, dict[str, Any]] | None = None, device: str | None = None
) -> tuple[list[PairMatcher], dict[str, str]]:
    """The matchers of match_dense's confs `names`, each overlaid with `options[name]` and seeing the
    images as given (the benchmark resizes), labelled by name; and {name: reason} for those that
    cannot run here (logged)."""
    unknown = set(options or {}) - set(names)
    if unknown:
        raise InputError(f"--options for {sorted(unknown)}, which --matchers does not list")
    matchers, skipped = [], {}
    for name in dict.fromkeys(names):
        conf = match_dense.resolve_conf({"name": name, **(options or {}).get(name, {})})
        try:
            matcher = load(conf["model"], None, device)
        except MatcherUnavailable as err:
            logger.warning("skipping %s: %s", name, err)
            skipped[name] = str(err)
            continue
        matcher.label = name
        logger.info("%s: %s", name, matcher.description)
        matchers.append(matcher)
    return matchers, skipped


def match_resized(
    matcher: PairMatcher, image0: np.ndarray, image1: np.ndarray, resize: int | None, enlarge: bool = False
) -> Matches:
    """Resize both float images [H,W](3) in [0,1] to long side `resize` (`resize_long_side`), match,
    time the matcher (synchronising CUDA), and map the keypoints back to original pixels."""
    (small0, s0), (small1, s1) = resize_long_side(image0, resize, enlarge), resize_long_side(image1, resize, enlarge)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    kpts0, kpts1, scores = matcher.match(small0, small1)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return Matches(to_original(kpts0, s0), to_original(kpts1, s1), np.asarray(scores, np.float32).reshape(-1), elapsed)


@dataclass
class PairResult:
    """One pair matched by every matcher: sizes (w, h) of the stored images, matches per label."""

    pair: EvalPair
    size0: tuple[int, int]
    size1: tuple[int, int]
    matches: dict[str, Matches]


def eval_images(pair: EvalPair) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]]:
    """The pair's upright float images ([H,W] or [H,W,3] in [0,1]) and the stored sizes (w, h)."""
    image0, image1 = read_pair_images(pair)
    size0, size1 = (image0.shape[1], image0.shape[0]), (image1.shape[1], image1.shape[0])
    image0 = to_float_image(upright_image(image0, pair.rotation0), str(pair.image0))
    image1 = to_float_image(upright_image(image1, pair.rotation1), str(pair.image1))
    return image0, image1, size0, size1


def match_all(
    pairs: Sequence[EvalPair],
    matchers: list[PairMatcher],
    resize: int | None,
    skipped: dict[str, str] | None = None,
    enlarge: bool = False,
    desc: str = "pairs",
) -> Iterator[PairResult]:
    """Match each pair with each matcher. One untimed warm-up call per matcher on the first pair; a
    matcher that fails there is logged, recorded in `skipped` ({label: reason}) and removed from
    `matchers` (in place). A pair whose image cannot be read is logged and skipped for every matcher."""
    warm = False
    for pair in tqdm(pairs, desc=desc, unit="pair"):
        try:
            image0, image1, size0, size1 = eval_images(pair)
        except (ImageReadError, ValueError) as err:
            logger.error("skipping pair %s: %s", pair.name, err)
            continue
        if not warm:
            for matcher in list(matchers):
                try:
                    match_resized(matcher, image0, image1, resize, enlarge)
                except Exception as err:  # noqa: BLE001 - an optional matcher that cannot run here
                    logger.error(
                        "dropping %s: it failed on %s: %s: %s", matcher.label, pair.name, type(err).__name__, err
                    )
                    matchers.remove(matcher)
                    if skipped is not None:
                        skipped[matcher.label] = f"failed on the first pair: {type(err).__name__}: {err}"
            if not matchers:
                raise MatcherUnavailable("every matcher failed on the first pair")
            warm = True
        results = {}
        for matcher in matchers:
            m = match_resized(matcher, image0, image1, resize, enlarge)
            m.kpts0 = rot90_points(m.kpts0, -pair.rotation0, image0.shape[1::-1])  # upright -> stored pixels
            m.kpts1 = rot90_points(m.kpts1, -pair.rotation1, image1.shape[1::-1])
            results[matcher.label] = m
        yield PairResult(pair, size0, size1, results)


def top_k(matches: Matches, k: int | None) -> Matches:
    """The k matches with the highest scores (all when k is None/0 or there are fewer)."""
    if not k or len(matches.scores) <= k:
        return matches
    keep = np.argsort(-matches.scores, kind="stable")[:k]
    return Matches(matches.kpts0[keep], matches.kpts1[keep], matches.scores[keep], matches.time_s)


# ---------------------------------------------------------------------------------------------
# Reporting


def summarize_records(
    records: list[dict[str, Any]], errors: list[float], thresholds: Sequence[float]
) -> dict[str, Any]:
    """A matcher's summary of its per-pair records: AUC (%) of `errors` (one or more per pair, inf
    for a failure) at `thresholds`, mean precision (%), matches and time per pair, pair and failure counts."""
    aucs = error_auc(errors, list(thresholds)) if errors else {t: float("nan") for t in thresholds}

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in records])) if records else float("nan")

    return {
        **{f"auc@{t:g}": 100.0 * aucs[t] for t in thresholds},
        "precision": 100.0 * mean("precision"),
        "matches": mean("matches"),
        "time_s": mean("time_s"),
        "pairs": len(records),
        "failures": int(np.sum(~np.isfinite(errors))) if errors else 0,
    }


def format_cell(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: Sequence[int] | None = None) -> str:
    """A GitHub markdown table; floats with `digits[i]` decimals (default 1); first column left-aligned."""
    digits = digits or [1] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(v, d) for v, d in zip(row, digits)) + " |")
    return "\n".join(lines)


def plot_cumulative_errors(
    errors: dict[str, Sequence[float]], max_error: float, xlabel: str, title: str, path: str | Path
) -> Path:
    """Cumulative error curves (share of pairs with error <= x, x in [0, max_error]), one line per
    matcher, written as a PNG (matplotlib Agg canvas; no global backend state)."""
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = np.linspace(0.0, max_error, 401)
    for label, values in errors.items():
        values = np.sort(np.asarray(values, np.float64))
        share = np.searchsorted(values, xs, side="right") / max(len(values), 1) * 100.0
        ax.plot(xs, share, label=f"{label} ({len(values)})", linewidth=1.8)
    ax.set_xlim(0, max_error)
    ax.set_ylim(-2, 102)  # a curve at 0 % (a matcher that never succeeds) stays visible
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs with smaller error (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def print_report(results: dict[str, Any], header: str) -> None:
    """The end-of-run summary of a benchmark: header, table, skipped matchers and output files."""
    print(f"\n{header}:\n")
    print(results["table"])
    for spec, reason in results["skipped_matchers"].items():
        print(f"\nskipped {spec}: {reason}")
    print(f"\nResults: {Path(results['curves_png']).parent / 'results.json'}; curves: {results['curves_png']}")
