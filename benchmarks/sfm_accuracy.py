"""Camera accuracy of the reconstruct pipeline, per scene and matcher, with and without track
refinement: each run is `sfm-reweight reconstruct` in its own process (peak memory measured), the
second run of a matcher reusing the first one's matches.

Scenes: `square` (the main job's embedded scene), `courtyard` (the repeated-structure scene,
scenes/repeated_scene.py), and from the shared data folder `fountain` (fountain-P11) and
`sacre_coeur` (no ground truth: registration and reprojection only).

    python benchmarks/sfm_accuracy.py [--scenes square courtyard fountain sacre_coeur] \\
        [--matchers eloftr_reweight sift] [--weights W] [--mapper incremental] [--known_intrinsics] \\
        [--options KEY=VALUE ...] [--seeds N] [--data DATA] [--output outputs/sfm_accuracy]

`--weights`: a checkpoint for our network (the `eloftr_reweight*` matchers) instead of the shipped
one; those runs go to folders named after it, beside the shipped weights' runs.

`--mapper`: a `reconstruction.confs` name; other than `incremental`, its runs go to folders named
after it.

`--known_intrinsics`: one camera with the ground truth's intrinsics (COLMAP's PINHOLE), kept fixed,
instead of a focal length guessed and refined per photo. On the courtyard the camera almost only
translates, so the focal length cannot be recovered from the photos: left free, the mappers drift it
(anywhere from -780 to 5850 px against the true 520) and the maps stall or fold with it. These runs
go to folders named `...-known_k`; scenes without ground truth (Sacre Coeur) run as they are.

`--options KEY=VALUE ...`: more reconstruction settings (`reconstruction.confs` keys, e.g.
`drop_ambiguous=False`); the runs go to folders named after them.

`--seeds N`: map N times with seeds 0 .. N-1 (of verification and mapping; the matches are reused).
One incremental mapping is one draw: on the courtyard, the same matches give a right map with one
seed and a folded one with the next, for SIFT as for ours. Each cell then holds the median over the
runs, the registered images their range, and the camera errors also the lowest and highest median.
The rows without and with track refinement are separate runs, so separate draws.

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

import numpy as np

from sfm_reweight import cli, reconstruction
from sfm_reweight.ground_truth import read_strecha_cameras
from sfm_reweight.image_io import read_image
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


def known_intrinsics(image_dir: Path, gt: Path) -> tuple[str, ...]:
    """Reconstruction `--options` for one PINHOLE camera with the intrinsics of the ground truth's
    `.camera` files (K's fx, fy, cx, cy), kept fixed in bundle adjustment. The photos must have the
    size the files give (K is in their pixels)."""
    cameras = read_strecha_cameras(gt)
    intrinsics = {(*K[[0, 1, 0, 1], [0, 1, 2, 2]].round(3), size) for K, _, _, size in cameras.values()}
    if len(intrinsics) != 1:
        raise SystemExit(f"{gt}: the photos have {len(intrinsics)} different intrinsics; --known_intrinsics needs one")
    *k, (w, h) = intrinsics.pop()
    name = next(iter(cameras))
    if read_image(image_dir / name).shape[:2] != (h, w):
        raise SystemExit(f"{image_dir / name}: not the {w}x{h} photo its ground truth's intrinsics are for")
    params = ",".join(f"{v:.10g}" for v in k)
    return ("camera_mode='single'", "camera_model='PINHOLE'", f"camera_params='{params}'", "refine_intrinsics=False")


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


def row(scene: str, matcher: str, refine: str, summaries: list[dict], peak: float, scale: float) -> str:
    """A table row of one or more runs of the same matches: medians over the runs that built a model,
    the registered images' range, with several runs the most weakly registered images of one run
    and the range of the camera errors' medians; the seconds of the first run (the one that matched)."""
    first = summaries[0]
    counts = sorted(s["registered"] for s in summaries)
    registered = f"{counts[0]}" + (f"-{counts[-1]}" if counts[-1] != counts[0] else "") + f"/{first['images']}"
    weak = max(len(s.get("weakly_registered") or []) for s in summaries)
    registered += f" ({'up to ' if len(summaries) > 1 else ''}{weak} weak)" if weak else ""
    modelled = [s for s in summaries if s["registered"]]
    registered += f", no model in {len(summaries) - len(modelled)}" if len(modelled) < len(summaries) else ""
    centres = [c for s in modelled if (c := s.get("camera_centres") or {}).get("median") is not None]
    error = ""
    if centres:
        medians = [scale * c["median"] for c in centres]
        error = f"{np.median(medians):.1f} / {np.median([scale * c['max'] for c in centres]):.1f}"
        error += f" (medians {min(medians):.1f}-{max(medians):.1f})" if len(centres) > 1 else ""

    def median(key: str) -> float:
        return float(np.median([s[key] for s in modelled])) if modelled else 0.0

    seconds = ", ".join(f"{k} {v:.0f}" for k, v in first["seconds"].items() if v >= 0.5)
    return (
        f"| {scene} | {matcher} | {refine} | {registered} | {median('points'):.0f} |"
        f" {median('mean_track_length'):.2f} | {median('mean_reprojection_error_px'):.2f} |"
        f" {error} | {seconds} | {peak:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenes = ["square", "courtyard", "fountain", "sacre_coeur"]
    parser.add_argument("--scenes", nargs="+", default=scenes, choices=scenes)
    parser.add_argument("--matchers", nargs="+", default=["eloftr_reweight", "sift"])
    parser.add_argument("--weights", type=Path, help="checkpoint for our network (default: the shipped weights)")
    parser.add_argument("--mapper", default="incremental", choices=sorted(reconstruction.confs))
    parser.add_argument(
        "--known_intrinsics", action="store_true", help="one camera with the ground truth's intrinsics, kept fixed"
    )
    cli.add_options(parser, "--options", "more reconstruction settings (e.g. drop_ambiguous=False)")
    parser.add_argument("--seeds", type=int, default=1, help="map N times, with the mapper's seeds 0 .. N-1")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--output", type=Path, default=Path("outputs/sfm_accuracy"))
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: expected at least 1 run")
    rows = []
    for scene in args.scenes:
        image_dir, gt = scene_inputs(scene, args.data, args.output)
        fixed = known_intrinsics(image_dir, gt) if args.known_intrinsics and gt else ()
        for matcher in args.matchers:
            for refine in ("none", "photometric"):
                name = f"{scene}-{matcher}" + (f"-{args.mapper}" if args.mapper != "incremental" else "")
                name += ("-known_k" if fixed else "") + "".join(f"-{option}" for option in args.options)
                folder = run_dir(args.output, name, matcher, args.weights)
                options = ("--mapper", args.mapper, "--options", *fixed, *args.options)
                runs = [
                    run(image_dir, gt, matcher, refine, folder, args.weights, (*options, f"seed={seed}"))
                    for seed in range(args.seeds)
                ]
                summaries, peaks = zip(*runs)
                rows.append(row(scene, matcher, refine, list(summaries), max(peaks), 1000.0))
                print(rows[-1], flush=True)
    print(
        "\n| scene | matcher | track refinement | registered | points | track length | reprojection px |"
        " camera centres median / max (mm) | seconds | peak GiB |"
    )
    print("|---|---|---|---|---:|---:|---:|---|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
