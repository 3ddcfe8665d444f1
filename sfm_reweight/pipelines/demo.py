"""The main demo: match one image pair, draw the matches and matchability maps, and score the
matches against a known homography when there is one.

    sfm-reweight demo                                   # embedded sample pair, outputs/demo/
    sfm-reweight demo --image0 a.jpg --image1 b.jpg     # your pair (no ground truth)
    sfm-reweight demo --image0 a.ppm --image1 b.ppm --homography H_1_2   # HPatches-style

Writes `matches.png`, `matchability.png` and `summary.json` to the output folder and prints a
one-paragraph summary. With ground truth it reports the fraction of matches whose keypoint1 lies
within 3 px of H(keypoint0), and the mean corner error of a RANSAC homography (cv2.findHomography,
3 px) fitted to the matches: the mean distance between the four image-0 corner pixels mapped by the
estimated and by the true H.
"""

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from sfm_reweight import Matcher, cli
from sfm_reweight.matcher import DEFAULT_CONF, confs
from sfm_reweight.utils.errors import InputError
from sfm_reweight.metrics import apply_homography, corner_error
from sfm_reweight.image_io import read_image
from sfm_reweight.scenes.sample_data import SAMPLE_NAME, sample_pair
from sfm_reweight.visualization import plot_matchability_pair, plot_matches
from sfm_reweight.utils import atomic

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("outputs/demo")
THRESHOLD_PX = 3.0
MIN_MATCHES_H = 4


def homography_metrics(
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    H: np.ndarray,
    image_size0: tuple[int, int],
    threshold: float = THRESHOLD_PX,
) -> dict[str, Any]:
    """Score matches [M,2] (pixel-centre convention) against the true H (image 0 -> image 1).

    precision: fraction of matches with |H(kp0) - kp1| <= threshold (None without matches);
    ransac_inliers / mean_corner_error_px: cv2.findHomography(RANSAC, threshold) on the matches and
    the mean distance of the corner pixels (0,0), (w-1,0), (w-1,h-1), (0,h-1) of image 0 mapped by
    the estimate vs by H (None, with `homography_status` saying why, when there is no estimate).
    """
    kp0 = np.asarray(keypoints0, np.float64).reshape(-1, 2)
    kp1 = np.asarray(keypoints1, np.float64).reshape(-1, 2)
    m = len(kp0)
    out: dict[str, Any] = {"threshold_px": threshold}
    if m:
        err = np.linalg.norm(apply_homography(H, kp0) - kp1, axis=1)
        out["precision"] = float(np.mean(np.nan_to_num(err, nan=np.inf) <= threshold))
    else:
        out["precision"] = None
    out.update(ransac_inliers=None, mean_corner_error_px=None, estimated_H=None)
    if m < MIN_MATCHES_H:
        out["homography_status"] = "not enough matches"
        return out
    cv2.setRNGSeed(0)  # RANSAC sampling: the same figures on every run
    H_est, mask = cv2.findHomography(kp0, kp1, cv2.RANSAC, threshold)
    if H_est is None:
        out["homography_status"] = "RANSAC found no homography"
        return out
    corner_err = corner_error(H_est, H, *image_size0)
    out["ransac_inliers"] = int(mask.sum())
    out["mean_corner_error_px"] = corner_err if np.isfinite(corner_err) else None
    out["homography_status"] = "ok" if out["mean_corner_error_px"] is not None else "estimate maps a corner to infinity"
    out["estimated_H"] = (H_est / H_est[2, 2]).tolist()
    return out


def summary_text(s: dict[str, Any]) -> str:
    """The one-paragraph summary printed at the end."""
    weights = s["weights"] if s["weights"] is not None else "random weights"
    text = (
        f"Matched {s['pair']} ({s['image_size0'][0]}x{s['image_size0'][1]} and "
        f"{s['image_size1'][0]}x{s['image_size1'][1]} px) with Matcher({s['conf']!r}, {weights}) on "
        f"{s['device']}: {s['num_matches']} match{'' if s['num_matches'] == 1 else 'es'} in {s['time_s']:.2f} s"
    )
    if s["mean_confidence"] is not None:
        text += f" (mean confidence {s['mean_confidence']:.3f})"
    text += "."
    gt = s["ground_truth"]
    if gt is None:
        text += " No ground truth for this pair, so no accuracy figures."
    else:
        thr = gt["threshold_px"]
        if gt["precision"] is None:
            text += f" Ground truth: no matches to score within {thr:g} px."
        else:
            text += f" Ground truth: {100 * gt['precision']:.1f}% of matches lie within {thr:g} px of H(keypoint0);"
        if gt["mean_corner_error_px"] is not None:
            text += (
                f" the RANSAC homography ({thr:g} px, {gt['ransac_inliers']} inliers) has a mean corner error"
                f" of {gt['mean_corner_error_px']:.1f} px."
            )
        else:
            text += f" RANSAC homography: {gt['homography_status']}."
    if s["weights"] is None:
        text += " (Random weights: poor figures are expected until trained weights ship.)"
    figures = [p for p in (s["matches_png"], s["matchability_png"]) if p]
    text += f" Figures: {', '.join(figures)}; figures and numbers in {s['summary_json']}."
    return text


def run_demo(
    output: str | Path = DEFAULT_OUTPUT,
    image0: str | Path | np.ndarray | None = None,
    image1: str | Path | np.ndarray | None = None,
    H: np.ndarray | None = None,
    conf: str | dict = DEFAULT_CONF,
    weights: str | Path | None = "default",
    device: str | None = None,
    matcher: Matcher | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Match one pair (the sample pair with its H when image0/image1 are None), write the figures and
    summary.json to `output`, and return the summary dict. `H` (image 0 -> image 1 pixels) enables
    the accuracy figures for a user pair; `matcher` reuses an existing Matcher; `seed` seeds torch
    before a new Matcher is built (random initialisation of weights the checkpoint does not set)."""
    if (image0 is None) != (image1 is None):
        raise ValueError("give both image0 and image1, or neither for the sample pair")
    if image0 is None:
        image0, image1, H = sample_pair()
        pair = f"the sample pair: {SAMPLE_NAME} and its warp by a known homography"
    else:
        names = [str(x) if isinstance(x, (str, Path)) else "array" for x in (image0, image1)]
        pair = f"{names[0]} / {names[1]}"
        # Read files once: the matcher and the figures use the same arrays.
        image0, image1 = (read_image(x) if isinstance(x, (str, Path)) else np.asarray(x) for x in (image0, image1))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)

    if matcher is None:
        t0 = time.perf_counter()
        # Seeded so that a network left with random weights (no checkpoint yet) is the same on every run.
        torch.manual_seed(seed)
        matcher = Matcher(conf, weights=weights, device=device)
        logger.info("built the matcher in %.2f s (device %s)", time.perf_counter() - t0, matcher.device)
    t0 = time.perf_counter()
    result = matcher(image0, image1)
    elapsed = time.perf_counter() - t0
    kp0, kp1, confidence = result["keypoints0"], result["keypoints1"], result["confidence"]
    size0 = tuple(int(v) for v in result["image_size0"])
    size1 = tuple(int(v) for v in result["image_size1"])
    logger.info("%d matches in %.2f s", len(kp0), elapsed)

    gt = None
    inliers = None
    if H is not None:
        H = np.asarray(H, np.float64).reshape(3, 3)
        gt = homography_metrics(kp0, kp1, H, size0)
        if len(kp0):
            err = np.linalg.norm(apply_homography(H, kp0) - kp1, axis=1)
            inliers = np.nan_to_num(err, nan=np.inf) <= THRESHOLD_PX

    matches_png = plot_matches(
        image0,
        image1,
        kp0,
        kp1,
        output / "matches.png",
        confidence=confidence,
        inliers=inliers,
        title=f"{conf if isinstance(conf, str) else 'custom'}"
        + ("" if matcher.weights is not None else " (random weights)")
        + (f", inlier = within {THRESHOLD_PX:g} px of true H" if inliers is not None else ""),
    )
    matchability_png = None
    if result["matchability0"] is not None and result["matchability1"] is not None:
        matchability_png = plot_matchability_pair(
            image0, image1, result["matchability0"], result["matchability1"], output / "matchability.png"
        )
    else:
        logger.warning("the matcher runs without reweighting: no matchability maps, no matchability.png")

    summary: dict[str, Any] = {
        "pair": pair,
        "conf": conf if isinstance(conf, str) else "custom",
        "weights": None if matcher.weights is None else str(matcher.weights),
        "device": str(matcher.device),
        "image_size0": list(size0),
        "image_size1": list(size1),
        "num_matches": int(len(kp0)),
        "time_s": round(elapsed, 4),
        "mean_confidence": float(np.mean(confidence)) if len(confidence) else None,
        "ground_truth": gt,
        "matches_png": str(matches_png),
        "matchability_png": None if matchability_png is None else str(matchability_png),
        "summary_json": str(output / "summary.json"),
    }
    atomic.write_text(output / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("--image0", type=Path, help="first image (default: the embedded sample pair)")
    parser.add_argument("--image1", type=Path, help="second image (give both or neither)")
    parser.add_argument("--homography", type=Path, help="text file with the 3x3 H from image0 to image1 pixels")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"output folder (default {DEFAULT_OUTPUT})")
    parser.add_argument(
        "--network", default=DEFAULT_CONF, choices=sorted(confs), help=f"our network's conf (default {DEFAULT_CONF})"
    )
    cli.add_weights_arguments(parser)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    if (args.image0 is None) != (args.image1 is None):
        parser.error("give both --image0 and --image1, or neither for the sample pair")
    if args.homography is not None and args.image0 is None:
        parser.error("--homography needs --image0 and --image1 (the sample pair has its own)")
    return args


def command(argv: list[str] | None = None) -> None:
    """Parse `argv` (default sys.argv[1:]), run the demo, print the summary."""
    args = parse_args(argv)

    def demo() -> dict[str, Any]:
        H = None if args.homography is None else read_homography(args.homography)
        weights = None if args.random_weights else args.weights or "default"
        return run_demo(args.output, args.image0, args.image1, H, args.network, weights, args.device)

    print(summary_text(cli.run(demo)))


def read_homography(path: Path) -> np.ndarray:
    """A 3x3 homography from a text file (9 numbers); InputError naming the file otherwise."""
    try:
        return np.loadtxt(path).reshape(3, 3)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: expected a 3x3 homography (9 numbers): {err}") from None


if __name__ == "__main__":
    command()
