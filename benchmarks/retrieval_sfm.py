"""SfM with retrieval pairs against exhaustive pairs, on the demo square's 60-view tour (rendered,
exact cameras): the main job (sfm_reweight/pipelines/reconstruct.py) once per pairs setting, same matcher; the
table gives the pairs matched, registered images, camera-centre errors after the similarity
alignment (metres) and the time of each stage.

    python benchmarks/retrieval_sfm.py [--matcher eloftr_reweight] [--runs exhaustive retrieval:5 retrieval:10] \
        [--output outputs/retrieval-sfm]

Runs resume (reconstruct.py reuses finished matches), so an interrupted benchmark continues.
"""

import argparse
import json
from pathlib import Path

from sfm_reweight.pipelines.reconstruct import main as reconstruct
from sfm_reweight.scenes import demo_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matcher", default="eloftr_reweight")
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["retrieval:5", "retrieval:10", "exhaustive"],
        help="pairs settings: exhaustive, retrieval:K or vocab_tree:K",
    )
    parser.add_argument("--output", type=Path, default=Path("outputs/retrieval-sfm"))
    args = parser.parse_args()
    scene = args.output / "tour"
    images = demo_scene.render_views(scene, demo_scene.tour_cameras())
    rows = {}
    for run in args.runs:
        method, _, k = run.partition(":")
        out = args.output / f"{args.matcher}-{method}{k}"
        summary = reconstruct(
            images, out, args.matcher, ground_truth=scene / "gt_cameras", pairs_method=method, num_matched=int(k or 10)
        )
        rows[run] = summary
        (args.output / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"matcher {args.matcher}")
    print(
        "| pairs | pairs matched | registered | median centre error (m) | max (m) | pairs s | matching s | mapping s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for run, s in rows.items():
        c, t = s.get("camera_centres") or {}, s["seconds"]
        median = f"{c['median']:.4f}" if c.get("median") is not None else "-"
        worst = f"{c['max']:.4f}" if c.get("max") is not None else "-"
        print(
            f"| {run} | {s['pairs']['count']} | {s['registered']}/{s['images']} | {median} | {worst}"
            f" | {t.get('pairs', 0):.0f} | {t['matching']:.0f} | {t['reconstruction']:.0f} |"
        )


if __name__ == "__main__":
    main()
