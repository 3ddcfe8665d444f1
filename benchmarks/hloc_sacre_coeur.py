"""Our matcher in hloc's own pipeline against our own pipeline, on the Sacre Coeur photos (10 internet
photos, the hloc demo set): exhaustive pairs (45), semi-dense matching at long side 1024, pycolmap
incremental mapping.

    python benchmarks/hloc_sacre_coeur.py [--data ../shared/data] [--hloc ../shared/clients/hloc] \\
        [--output outputs/hloc-sacre-coeur]

- hloc: hloc's pairs_from_exhaustive, match_dense with our plugin (sfm_reweight/hloc.py, conf
  `eloftr_reweight`, hloc's defaults otherwise: its aggregation, at most 8192 keypoints per image)
  and reconstruction.main (camera mode AUTO);
- ours: the reconstruct pipeline with its default matcher (the same network and weights).

Each side runs in a process of its own, from scratch (its output folder is emptied first); seconds are
wall-clock, interpreter start and model loading included. `--data` defaults to $SFM_REWEIGHT_DATA,
else `shared/data` beside the repository; `--hloc` to `shared/clients/hloc` (hloc's source, not on
PyPI). Where no torchvision loads (hloc's match_dense imports it for one resize), the tests' stand-in
(tests/helpers/torchvision_standin) takes its place.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PHOTOS = Path("sacre_coeur") / "mapping"
STANDIN = REPO / "tests" / "helpers" / "torchvision_standin"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def run_hloc(photos: Path, hloc_root: Path, output: Path) -> dict:
    """hloc's pipeline with our plugin on `photos`; returns the summary (also in OUTPUT/summary.json)."""
    sys.path.insert(0, str(hloc_root))
    try:
        import torchvision  # noqa: F401
    except Exception:
        print(f"no torchvision loads: hloc's match_dense resizes with the stand-in in {STANDIN}", flush=True)
        sys.path.insert(0, str(STANDIN))
    import pycolmap
    from hloc import match_dense, pairs_from_exhaustive, reconstruction

    import sfm_reweight.hloc  # noqa: F401  registers the matcher and its confs
    from sfm_reweight import colmap

    names = sorted(p.name for p in photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = output / "pairs-exhaustive.txt"
    pairs_from_exhaustive.main(pairs, image_list=names)
    features, matches = match_dense.main(match_dense.confs["eloftr_reweight"], pairs, photos, export_dir=output)
    model = reconstruction.main(output / "sfm", photos, pairs, features, matches, camera_mode=pycolmap.CameraMode.AUTO)
    summary = {"images": len(names), "registered": 0, "points": 0}
    if model is not None:
        summary.update(colmap.model_statistics(model))
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def timed(command: list[str], output: Path) -> tuple[dict, float] | None:
    """Run `command` from scratch (OUTPUT emptied first); its summary.json and the wall-clock seconds,
    None when it fails."""
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    start = time.perf_counter()
    run = subprocess.run(command, cwd=REPO)
    seconds = time.perf_counter() - start
    if run.returncode != 0 or not (output / "summary.json").is_file():
        print(f"error: {' '.join(command)} failed (exit {run.returncode})", flush=True)
        return None
    return json.loads((output / "summary.json").read_text()), seconds


def table(rows: dict[str, tuple[dict, float] | None]) -> str:
    lines = [
        "| pipeline | registered | points | mean track length | mean reprojection error (px) | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        if row is None:
            lines.append(f"| {label} | failed | | | | |")
            continue
        s, seconds = row
        track, error = s.get("mean_track_length"), s.get("mean_reprojection_error_px")
        lines.append(
            f"| {label} | {s['registered']}/{s['images']} | {s['points']} | {'-' if track is None else f'{track:.2f}'}"
            f" | {'-' if error is None else f'{error:.3f}'} | {seconds:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SFM_REWEIGHT_DATA", SHARED / "data")))
    parser.add_argument("--hloc", type=Path, default=SHARED / "clients" / "hloc", help="hloc's source checkout")
    parser.add_argument("--output", type=Path, default=Path("outputs/hloc-sacre-coeur"))
    parser.add_argument("--side", choices=["hloc"], help=argparse.SUPPRESS)  # one side, in this process
    args = parser.parse_args()
    photos, output = (args.data / PHOTOS).resolve(), args.output.resolve()
    if not photos.is_dir():
        sys.exit(f"error: {photos} not found: give --data (or set SFM_REWEIGHT_DATA), the folder holding {PHOTOS}")
    if not (args.hloc / "hloc" / "__init__.py").is_file():
        sys.exit(f"error: {args.hloc} is not an hloc checkout (no hloc/__init__.py): give --hloc")
    if args.side == "hloc":
        run_hloc(photos, args.hloc.resolve(), output)
        return

    me = [sys.executable, str(Path(__file__).resolve()), "--data", str(args.data.resolve())]
    rows = {
        "hloc + plugin (eloftr_reweight)": timed(
            [*me, "--hloc", str(args.hloc.resolve()), "--output", str(output / "hloc"), "--side", "hloc"],
            output / "hloc",
        ),
    }
    reconstruct = [sys.executable, "-m", "sfm_reweight.pipelines.reconstruct", "--image_dir", str(photos)]
    ours = timed([*reconstruct, "--output", str(output / "ours")], output / "ours")
    rows[f"ours ({ours[0].get('matcher', 'default matcher') if ours else 'default matcher'})"] = ours
    print(f"\nSacre Coeur, {photos}\n{table(rows)}")


if __name__ == "__main__":
    main()
