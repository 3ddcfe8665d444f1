"""match_dense on a local Ray cluster: pairs/s with 1 and 2 workers against one process, the
driver's overhead per pair, its memory; and the wall time of 125,000 pairs worked out from them.

Rows (each in a fresh process, so that its peak memory is its own):
- `network`: the default matcher (eloftr_reweight) on all pairs of --image_dir (default: the main job's
  rendered views, 640x480) at a long side of at most --resize px: one process (torch on every
  core), then a local Ray cluster with 1 and 2 workers (one CPU and one torch thread each); pairs/s
  over the whole match_dense call (cluster start-up, model loading, keypoints and matches passes
  included);
- `driver`: a stub matcher that costs nothing (benchmarks/match_dense_memory.py's: 4000 matches per
  pair) on 2 workers, so that the driver's work per pair (receiving the chunk, writing the shard,
  the keypoints and matches passes) is all there is: its CPU seconds per pair is the overhead, the
  inverse the most pairs/s one driver can take.
Memory: the peak RSS of the driver process (Linux VmHWM) above its RSS after the imports.

    python benchmarks/cluster_matching.py [--image_dir DATA/sacre_coeur/mapping] [--resize 1024] [--driver_pairs 2000]
        [--gpu_seconds_per_pair S]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray

import match_dense_memory
from sfm_reweight import match_dense, pairs_from_exhaustive
from sfm_reweight.scenes.demo_scene import render_demo_scene

ray.cloudpickle.register_pickle_by_value(match_dense_memory)  # the stub travels to the workers by value
PAIRS_125K, GPUS = 125_000, 8


def run_row(kind: str, workers: int, image_dir: Path | None, resize: int, driver_pairs: int) -> dict:
    """One match_dense call in this process; workers 0: no cluster."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cluster = {"address": "local", "workers": workers} if workers else {"address": None}
        if kind == "network":
            images = image_dir or render_demo_scene(root / "scene")
            pairs = root / "pairs.txt"
            pairs_from_exhaustive.main(pairs, image_dir=images)
            conf, matcher = (
                {"name": "eloftr_reweight", "preprocessing": {"resize_max": resize}, "cluster": cluster},
                None,
            )
        else:
            pairs = match_dense_memory.make_inputs(root, driver_pairs)
            images = root / "images"
            conf, matcher = (
                {"name": "eloftr_reweight_lite", "chunk_size": 64, "cluster": cluster},
                match_dense_memory.StubMatcher(),
            )
        count = sum(1 for _ in open(pairs))
        match_dense_memory.reset_peak_rss()
        base = match_dense_memory.rss_mib("VmRSS")
        start, cpu = time.time(), time.process_time()
        match_dense.main(conf, pairs, images, root / "out", matcher=matcher)
        wall, cpu = time.time() - start, time.process_time() - cpu
    return {
        "kind": kind,
        "workers": workers,
        "pairs": count,
        "wall_s": wall,
        "pairs_per_s": count / wall,
        "driver_cpu_ms_per_pair": 1000 * cpu / count,
        "driver_peak_mib": match_dense_memory.rss_mib("VmHWM") - base,
    }


def in_subprocess(kind: str, workers: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--row", kind, str(workers)]
    command += ["--resize", str(args.resize), "--driver_pairs", str(args.driver_pairs)]
    command += ["--image_dir", str(args.image_dir)] if args.image_dir else []
    out = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--image_dir", type=Path, help="photos whose pairs the network rows match (default: the main job's views)"
    )
    parser.add_argument("--resize", type=int, default=1024, help="long side the network matches at (at most)")
    parser.add_argument("--driver_pairs", type=int, default=2000, help="pairs of the driver-overhead row")
    parser.add_argument(
        "--gpu_seconds_per_pair", type=float, help="a GPU worker's measured s/pair, for the 125k estimate"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--row", nargs=2, metavar=("KIND", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(args.row[0], int(args.row[1]), args.image_dir, args.resize, args.driver_pairs)))
        return

    rows = [in_subprocess("network", w, args) for w in (0, 1, 2)] + [in_subprocess("driver", 2, args)]
    photos = args.image_dir or "the main job's views (640x480)"
    print(
        f"match_dense, {os.cpu_count()} CPUs; network rows: eloftr_reweight at most {args.resize} px,"
        f" all pairs of {photos}\n"
    )
    print("| run | workers | pairs | wall s | pairs/s | speed-up | driver CPU ms/pair | driver peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        name = (
            "one process"
            if r["workers"] == 0
            else ("Ray, network" if r["kind"] == "network" else "Ray, stub matcher (driver only)")
        )
        speedup = f"{r['pairs_per_s'] / rows[0]['pairs_per_s']:.2f}" if r["kind"] == "network" else "-"
        print(
            f"| {name} | {r['workers']} | {r['pairs']} | {r['wall_s']:.1f} | {r['pairs_per_s']:.2f} | {speedup} |"
            f" {r['driver_cpu_ms_per_pair']:.2f} | {r['driver_peak_mib']:.0f} |"
        )

    one, two, driver = rows[1], rows[2], rows[3]
    efficiency = two["pairs_per_s"] / (2 * one["pairs_per_s"])
    hours_per_second = PAIRS_125K / (GPUS * efficiency) / 3600  # wall hours per second a worker takes for a pair
    ceiling = 1000 / driver["driver_cpu_ms_per_pair"]
    cpu_pair = 1 / one["pairs_per_s"]
    print(
        f"\n{PAIRS_125K:,} pairs on {GPUS} workers taking t s/pair,"
        f" at the measured 2-worker efficiency {efficiency:.2f}:"
        f" {PAIRS_125K:,} x t / ({GPUS} x {efficiency:.2f}) = {hours_per_second:.2f} h per second of t"
    )
    if args.gpu_seconds_per_pair:
        print(
            f"- a GPU at t = {args.gpu_seconds_per_pair:.3f} s/pair (given):"
            f" {hours_per_second * args.gpu_seconds_per_pair:.1f} h"
        )
    print(f"- a CPU worker of this machine at t = {cpu_pair:.2f} s/pair: {hours_per_second * cpu_pair:.1f} h")
    print(
        f"- one driver takes {ceiling:.0f} pairs/s:"
        f" it limits {GPUS} workers only below t = {GPUS * efficiency / ceiling:.3f} s/pair"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
