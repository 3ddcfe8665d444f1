"""Camera accuracy of the reconstruct pipeline, per scene and matcher, with and without track
refinement: each run is `sfm-reweight reconstruct` in its own process (peak memory measured), the
second run of a matcher reusing the first one's matches.

Scenes: `square` (the main job's embedded scene), `courtyard` (the repeated-structure scene,
scenes/repeated_scene.py), and from the shared data folder `fountain` (fountain-P11) and
`sacre_coeur` (no ground truth: registration and reprojection only).

    python benchmarks/sfm_accuracy.py [--scenes square courtyard fountain sacre_coeur] \\
        [--matchers eloftr_reweight sift] [--weights W] [--data DATA] [--output outputs/sfm_accuracy]

`--weights`: a checkpoint for our network (the `eloftr_reweight*` matchers) instead of the shipped
one; those runs go to folders named after it, beside the shipped weights' runs.

Prints a markdown table: registered images (weakly registered ones in brackets), points, track
length, reprojection error, camera-centre error after Sim(3) (median / max, in millimetres for the
scenes in metres), seconds per stage and peak memory.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from sfm_reweight.scenes.demo_scene import render_demo_scene
from sfm_reweight.scenes.repeated_scene import render_repeated_scene


def default_data() -> Path:
    """$SFM_REWEIGHT_DATA, else the folder `shared/data` beside the repository."""
    env = os.environ.get("SFM_REWEIGHT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def scene_inputs(name: str, data: Path, output: Path) -> tuple[Path, Path | None]:
    """(photo folder, ground-truth folder or None) of a scene, rendering the synthetic ones."""
    if name == "square":
        return render_demo_scene(output / "square-scene"), output / "square-scene" / "gt_cameras"
    if name == "courtyard":
        return render_repeated_scene(output / "courtyard-scene"), output / "courtyard-scene" / "gt_cameras"
    if name == "fountain":
        image_dir, gt = data / "strecha_fountain_p11" / "images", data / "strecha_fountain_p11" / "gt_dense_cameras"
    else:
        image_dir, gt = data / "sacre_coeur" / "mapping", None
    if not image_dir.is_dir():
        raise SystemExit(f"{image_dir}: not found; give the data folder with --data (or SFM_REWEIGHT_DATA)")
    return image_dir, gt


def ours(matcher: str, weights: Path | None) -> Path | None:
    """`weights` where `matcher` is our network (`eloftr_reweight*`), else None: the others run as they are."""
    return weights if matcher.startswith("eloftr_reweight") else None


def run_dir(root: Path, name: str, matcher: str, weights: Path | None) -> Path:
    """The folder of a run: ROOT/NAME, with the weights' file name where our network runs with other weights."""
    given = ours(matcher, weights)
    return root / (f"{name}-{given.stem}" if given else name)


def run_logged(command: list[str], output: Path) -> float:
    """Run `command` in its own process, its output in OUTPUT/benchmark.log; its peak resident memory
    (GiB). A failure ends the benchmark with one line naming the log."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "benchmark.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own peak memory, as it is reaped
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(command)} failed: see {output / 'benchmark.log'}")
    return usage.ru_maxrss / 2**20


def run(
    image_dir: Path,
    gt: Path | None,
    matcher: str,
    refine: str,
    output: Path,
    weights: Path | None = None,
    options: tuple[str, ...] = (),
) -> tuple[dict, float]:
    """One `sfm-reweight reconstruct` run (with `weights` for our network, if given, and more command-line
    `options`); its summary and its peak resident memory (GiB)."""
    command = [sys.executable, "-m", "sfm_reweight.pipelines.reconstruct", "--image_dir", str(image_dir)]
    command += ["--matcher", matcher, "--refine_tracks", refine, "--output", str(output), *options]
    command += ["--weights", str(given)] if (given := ours(matcher, weights)) else []
    command += ["--ground_truth", str(gt)] if gt else []
    peak = run_logged(command, output)
    return json.loads((output / "summary.json").read_text()), peak


def row(scene: str, matcher: str, refine: str, summary: dict, peak: float, scale: float) -> str:
    weak = summary.get("weakly_registered") or []
    registered = f"{summary['registered']}/{summary['images']}" + (f" ({len(weak)} weak)" if weak else "")
    centres = summary.get("camera_centres") or {}
    error = (
        f"{scale * centres['median']:.1f} / {scale * centres['max']:.1f}" if centres.get("median") is not None else ""
    )
    seconds = ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items() if v >= 0.5)
    return (
        f"| {scene} | {matcher} | {refine} | {registered} | {summary['points']} |"
        f" {summary.get('mean_track_length', 0):.2f} | {summary.get('mean_reprojection_error_px', 0):.2f} |"
        f" {error} | {seconds} | {peak:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenes = ["square", "courtyard", "fountain", "sacre_coeur"]
    parser.add_argument("--scenes", nargs="+", default=scenes, choices=scenes)
    parser.add_argument("--matchers", nargs="+", default=["eloftr_reweight", "sift"])
    parser.add_argument("--weights", type=Path, help="checkpoint for our network (default: the shipped weights)")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--output", type=Path, default=Path("outputs/sfm_accuracy"))
    args = parser.parse_args()
    rows = []
    for scene in args.scenes:
        image_dir, gt = scene_inputs(scene, args.data, args.output)
        for matcher in args.matchers:
            for refine in ("none", "photometric"):
                folder = run_dir(args.output, f"{scene}-{matcher}", matcher, args.weights)
                summary, peak = run(image_dir, gt, matcher, refine, folder, args.weights)
                rows.append(row(scene, matcher, refine, summary, peak, 1000.0))
                print(rows[-1], flush=True)
    print(
        "\n| scene | matcher | track refinement | registered | points | track length | reprojection px |"
        " camera centres median / max (mm) | seconds | peak GiB |"
    )
    print("|---|---|---|---|---:|---:|---:|---|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
