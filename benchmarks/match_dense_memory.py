"""Peak memory of match_dense against the number of pairs: it should stay flat while the raw
semi-dense matches grow with the pairs (hloc keeps its per-image aggregation state for every open
image and grows with them).

A stub matcher stands in for the network (which would dominate the time and add a constant): every
pair gets 4000 matches between 640x480 images, drawn from a pool of 5000 points per image with
0.3 px noise, so that the aggregation sees realistic repeated observations. The pairs are
sequential, each image with the next 10. Each row runs in a fresh process; its memory is the peak
resident set size during `match_dense.main`, above the RSS after the imports (Linux VmHWM, reset
through /proc/self/clear_refs).

    python benchmarks/match_dense_memory.py [--pairs 10 100 1000] [--json out.json]
"""

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

from sfm_reweight import match_dense
from sfm_reweight.utils.pairs import write_pairs

WIDTH, HEIGHT, POOL, MATCHES, WINDOW = 640, 480, 5000, 4000, 10


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field + ":")).split()[1]) / 1024


def reset_peak_rss() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def pool(i: int) -> np.ndarray:
    return np.random.default_rng(i).uniform(0, (WIDTH - 1, HEIGHT - 1), (POOL, 2))


class StubMatcher:
    """Image i carries i in its first two pixels; pair (i, j) matches MATCHES of the pool points."""

    def match_pairs(self, pairs, batch_size=1):
        for image0, image1 in pairs:
            i, j = (int(round(im[0, 0] * 255)) + 256 * int(round(im[0, 1] * 255)) for im in (image0, image1))
            rng = np.random.default_rng(100_003 * i + j)
            idx = rng.choice(POOL, MATCHES, replace=False)
            yield {
                "keypoints0": (pool(i)[idx] + rng.normal(0, 0.3, (MATCHES, 2))).astype(np.float32),
                "keypoints1": (pool(j)[idx] + rng.normal(0, 0.3, (MATCHES, 2))).astype(np.float32),
                "confidence": rng.uniform(0.2, 1, MATCHES).astype(np.float32),
                "image_size0": np.array([WIDTH, HEIGHT]),
                "image_size1": np.array([WIDTH, HEIGHT]),
            }


def make_inputs(root: Path, num_pairs: int) -> Path:
    pairs = []
    i = 0
    while len(pairs) < num_pairs:
        pairs += [(i, i + d) for d in range(1, WINDOW + 1)][: num_pairs - len(pairs)]
        i += 1
    (root / "images").mkdir(parents=True)
    for k in sorted({n for p in pairs for n in p}):
        image = np.full((HEIGHT, WIDTH), 128, np.uint8)
        image[0, :2] = k % 256, k // 256
        cv2.imwrite(str(root / "images" / f"{k:05d}.png"), image)
    write_pairs(root / "pairs.txt", [(f"{a:05d}.png", f"{b:05d}.png") for a, b in pairs])
    return root / "pairs.txt"


def run_row(num_pairs: int) -> dict:
    """One measurement (in this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pairs = make_inputs(root, num_pairs)
        reset_peak_rss()
        baseline = rss_mib("VmRSS")
        start = time.time()
        features, matches = match_dense.main(
            "eloftr_reweight_lite", pairs, root / "images", root / "out", matcher=StubMatcher()
        )
        seconds = time.time() - start
        peak = rss_mib("VmHWM") - baseline
        with h5py.File(features) as f:
            num_images = len(f)
        with h5py.File(matches) as f:
            written = sum(int((g["matches0"][()] > -1).sum()) for a in f.values() for g in a.values())
        return {
            "pairs": num_pairs,
            "images": num_images,
            "raw_mib": num_pairs * MATCHES * (2 * 2 * 4 + 4) / 2**20,
            "peak_rss_increase_mib": round(peak, 1),
            "baseline_rss_mib": round(baseline, 1),
            "seconds": round(seconds, 1),
            "matches_written": written,
            "features_mib": round(features.stat().st_size / 2**20, 1),
            "matches_mib": round(matches.stat().st_size / 2**20, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--row", type=int, help=argparse.SUPPRESS)  # internal: one row, printed as JSON
    args = parser.parse_args()
    if args.row is not None:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(run_row(args.row)))
        return
    rows = []
    for n in args.pairs:
        out = subprocess.run([sys.executable, __file__, "--row", str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "| pairs | images | raw matches MiB | peak RSS increase MiB | time s"
        " | matches written | features MiB | matches MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['pairs']} | {r['images']} | {r['raw_mib']:.1f} | {r['peak_rss_increase_mib']:.1f}"
            f" | {r['seconds']:.1f}"
            f" | {r['matches_written']} | {r['features_mib']:.1f} | {r['matches_mib']:.1f} |"
        )
    print(
        f"\nRSS after imports: {rows[0]['baseline_rss_mib']:.0f} MiB; stub matcher, {MATCHES} matches per pair, "
        f"{WIDTH}x{HEIGHT} images, sequential pairs (window {WINDOW}),"
        " conf eloftr_reweight_lite (cell 1 px, max_kps 8192)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
