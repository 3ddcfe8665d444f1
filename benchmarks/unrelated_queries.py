"""False and true accepts of localization: photos of other places queried against a map must get no
pose, the map's own views must. Two maps, each built once (`sfm-reweight reconstruct`, default
matcher): the embedded square (the main job's 12 views; true queries: 11 views rendered between
them, `demo_scene.cameras(23)[1::2]`, and 8 harder ones off the map's arc, `harder_views`) and
fountain-P11 without 0002, 0005 and 0008 (the true queries). Unrelated queries, the same for both
maps: the 10 Sacre Coeur photos, 8 Middlebury views (temple and dino, every 4th) and every 17th
photo of train_pool (19 photos). Each map's queries are localized by
sfm_reweight/pipelines/localize.py (`--num_loc 3`, ground-truth intrinsics for the true queries)
twice on the same matches: under the rule of inlier counts alone ("before": `min_inliers`, the
other acceptance keys off) and under localize_sfm's default conf ("after"); the logs give each
query's correspondences, inliers, inlier ratios and spread.

    python benchmarks/unrelated_queries.py [--data DATA] [--output outputs/unrelated_queries] \\
        [--maps square fountain] [--matcher eloftr_reweight] [--per_query]

`--data` defaults to $SFM_REWEIGHT_DATA, else the `shared/data` folder beside the repository. The
photos are linked in place, never copied. Prints markdown tables: per map and rule the false
accepts / unrelated queries and the true accepts / true queries (with those within 0.25 m, 2 deg
of the ground truth), then the spread of the statistics the rule looks at for both kinds.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sfm_reweight import localize_sfm
from sfm_reweight.pipelines.localize import main as localize
from sfm_reweight.pipelines.reconstruct import main as reconstruct
from sfm_reweight.scenes import demo_scene
from sfm_reweight.scenes.synthetic_scene import Camera, look_at

FOUNTAIN_QUERIES = ("0002.jpg", "0005.jpg", "0008.jpg")
# the rule before the acceptance keys: min_inliers alone
BEFORE = {"name": "default", "min_inlier_ratio": 0.0, "min_inlier_cells": 0.0}
STATS = ("num_correspondences", "num_inliers", "inlier_ratio", "best_db_inlier_ratio", "inlier_cells", "inlier_hull")


def default_data() -> Path:
    env = os.environ.get("SFM_REWEIGHT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def link(target: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_symlink():
        path.symlink_to(Path(target).resolve())


def unrelated_photos(data: Path) -> dict[str, Path]:
    """The unrelated queries: query name (`unrelated-<source>-<file>`) -> photo."""
    photos = sorted((data / "sacre_coeur" / "mapping").glob("*.jpg"))
    for ring in ("templeSparseRing", "dinoSparseRing"):
        photos += sorted((data / "middlebury_mview" / ring).glob("*.png"))[::4]
    photos += sorted((data / "train_pool").glob("*.jpg"))[::17]
    return {f"unrelated-{p.parent.name}-{p.name}": p for p in photos}


def harder_views() -> list[Camera]:
    """Views of the square off the map's arc (radius 4.5 m, eye height 1.5-1.8 m): four on an arc of
    2.5 m at 1.2 m (closer, lower: the facade larger), four on an arc of 5.5 m at 2.4 m (farther,
    higher), looking at the points the map's views look at."""
    w, h = demo_scene.IMAGE_SIZE
    K = np.array([[demo_scene.FOCAL, 0, w / 2], [0, demo_scene.FOCAL, h / 2], [0, 0, 1.0]])
    views = []
    for radius, height in ((2.5, 1.2), (5.5, 2.4)):
        for angle in np.deg2rad([-135.0, -105.0, -75.0, -45.0]):
            eye = np.array([radius * np.cos(angle), radius * np.sin(angle) - 0.5, height])
            R, t = look_at(eye, np.array([0.6 * np.cos(angle), 2.5, 1.3]))
            views.append(Camera(K, R, t, demo_scene.IMAGE_SIZE))
    return views


def build_map(image_dir: Path | None, output: Path, matcher: str, ground_truth: Path | None) -> dict[str, Any]:
    """reconstruct.py's summary of the map in `output` (built unless it is there)."""
    summary_path = output / "summary.json"
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("registered"):
        return json.loads(summary_path.read_text())
    return reconstruct(image_dir, output, matcher, ground_truth=ground_truth)


def square(root: Path, matcher: str) -> tuple[Path, dict[str, Any], dict[str, Path], Path]:
    """The square's map folder, map summary, true queries (name -> photo) and ground-truth folder."""
    built = build_map(None, root / "map", matcher, None)
    scene = root / "map" / "scene"
    extra = demo_scene.render_views(root / "extra", demo_scene.cameras(2 * demo_scene.NUM_VIEWS - 1)[1::2])
    gt = root / "gt_cameras"
    for camera in sorted((scene / "gt_cameras").glob("*.camera")):
        link(camera, gt / camera.name)
    harder = demo_scene.render_views(root / "harder", harder_views())
    true = {f"between_{p.name}": p for p in sorted(extra.glob("*.jpg"))}
    true.update({f"harder_{p.name}": p for p in sorted(harder.glob("*.jpg"))})
    for name, photo in true.items():
        link(photo.parent.parent / "gt_cameras" / f"{photo.name}.camera", gt / f"{name}.camera")
    return scene / "images", built, true, gt


def fountain(root: Path, data: Path, matcher: str) -> tuple[Path, dict[str, Any], dict[str, Path], Path]:
    images, gt = data / "strecha_fountain_p11" / "images", data / "strecha_fountain_p11" / "gt_dense_cameras"
    for photo in sorted(images.glob("*.jpg")):
        if photo.name not in FOUNTAIN_QUERIES:
            link(photo, root / "photos" / photo.name)
    built = build_map(root / "photos", root / "map", matcher, gt)
    return root / "photos", built, {name: images / name for name in FOUNTAIN_QUERIES}, gt


def run(
    map_dir: Path, built: dict[str, Any], queries: dict[str, Path], gt: Path, output: Path, matcher: str, localizer
) -> tuple[dict[str, Any], dict[str, dict]]:
    """One localize.py run (its matches reused by the next one into `output`): summary and logs."""
    for name, photo in queries.items():
        link(photo, output / "queries" / name)
    summary = localize(
        map_dir,
        output / "queries",
        output / "loc",
        matcher=matcher,
        model=Path(built["features"]).parent / "sfm",
        features=Path(built["features"]),
        ground_truth=gt,
        num_loc=3,
        localizer=localizer,
    )
    return summary, json.loads((output / "loc" / "results.txt_logs.json").read_text())["loc"]


def spread(values: list[float], digits: int) -> str:
    """min / median / max."""
    if not values:
        return "-"
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), float(np.median(values)), max(values)))


def verdict(log: dict[str, Any]) -> str:
    return "pose" if log["localized"] else log["failure"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--output", type=Path, default=Path("outputs/unrelated_queries"))
    parser.add_argument("--maps", nargs="+", choices=("square", "fountain"), default=["square", "fountain"])
    parser.add_argument("--matcher", default="eloftr_reweight")
    parser.add_argument("--per_query", action="store_true", help="also a row per query")
    args = parser.parse_args()
    needed = ("sacre_coeur", "middlebury_mview", "train_pool", "strecha_fountain_p11")
    if not all((args.data / d).is_dir() for d in needed):
        sys.exit(f"error: {args.data} lacks one of {needed}: give --data (or set SFM_REWEIGHT_DATA)")
    unrelated = unrelated_photos(args.data)
    after = localize_sfm.confs["default"]
    rule = ", ".join(f"{k}={after[k]}" for k in ("min_inliers", "min_inlier_ratio", "min_inlier_cells"))

    results: dict[str, dict[str, Any]] = {}
    for name in args.maps:
        start = time.time()
        root = args.output / name
        if name == "square":
            map_dir, built, true, gt = square(root, args.matcher)
        else:
            map_dir, built, true, gt = fountain(root, args.data, args.matcher)
        queries = {**true, **unrelated}
        runs = {
            label: run(map_dir, built, queries, gt, root, args.matcher, conf)
            for label, conf in (("before", BEFORE), ("after", "default"))
        }
        results[name] = {"built": built, "true": list(true), "runs": runs, "seconds": time.time() - start}

    print(f"Rules: before = min_inliers={after['min_inliers']} only; after = {rule} (localize_sfm's default).\n")
    print("| map | rule | false accepts / unrelated | true accepts / true | true within (0.25 m, 2 deg) |")
    print("|---|---|---:|---:|---:|")
    for name, r in results.items():
        map_label = f"{name} ({r['built']['registered']}/{r['built']['images']} registered)"
        for label, (summary, logs) in r["runs"].items():
            false_accepts = sum(logs[q]["localized"] for q in unrelated)
            true_accepts = sum(logs[q]["localized"] for q in r["true"])
            errors = summary["ground_truth"]["errors"]
            good = sum(
                logs[q]["localized"] and errors[q]["position"] <= 0.25 and errors[q]["rotation_deg"] <= 2.0
                for q in r["true"]
            )
            print(
                f"| {map_label} | {label} | {false_accepts} / {len(unrelated)} | {true_accepts} / {len(r['true'])}"
                f" | {good} / {len(r['true'])} |"
            )

    print("\nThe PnP of each kind of query, min / median / max over the queries with a PnP pose:\n")
    print("| map | queries | with a PnP pose | correspondences | inliers | ratio | ratio, best db | cells | hull |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        logs = r["runs"]["before"][1]
        for kind, names in (("true", r["true"]), ("unrelated", list(unrelated))):
            solved = [logs[q] for q in names if logs[q].get("inlier_ratio") is not None]
            cells = [spread([log[k] for log in solved], 0 if k.startswith("num") else 2) for k in STATS]
            print(f"| {name} | {kind} | {len(solved)} / {len(names)} | " + " | ".join(cells) + " |")

    least = after["min_inliers"] // 2
    print(f"\nThe true queries and the unrelated ones with at least {least} inliers (all with --per_query):\n")
    print("| map | query | correspondences | inliers | ratio | ratio, best db | cells | hull | before | after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name, r in results.items():
        before, logs = r["runs"]["before"][1], r["runs"]["after"][1]
        for q in [*r["true"], *unrelated]:
            log = before[q]
            if not args.per_query and q not in r["true"] and log["num_inliers"] < least:
                continue
            stats = [log.get(k) for k in STATS]
            cells = [
                "-" if v is None else f"{v:.0f}" if k.startswith("num") else f"{v:.2f}" for k, v in zip(STATS, stats)
            ]
            print(f"| {name} | {q} | " + " | ".join(cells) + f" | {verdict(log)} | {verdict(logs[q])} |")
    print()
    for name, r in results.items():
        print(f"{name}: {r['seconds']:.0f} s (map, rendering, matching and both localizations)")


if __name__ == "__main__":
    main()
