"""Localization on real photos with ground truth: Strecha fountain-P11 split into a map (all images
but 0002, 0005 and 0008) and those three queries, plus a photo of an unrelated scene (Sacre Coeur)
that must be reported as not localized. Each matcher builds its own map with sfm_reweight/pipelines/localize.py,
which aligns the map to the ground-truth cameras and scores the queries.

    python benchmarks/localize_fountain.py --data /path/to/shared/data \\
        [--matchers eloftr_reweight sift] [--output outputs/loc-fountain]

`--data` defaults to $SFM_REWEIGHT_DATA. The photos are linked in place, never copied.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from sfm_reweight.pipelines.localize import main as localize

QUERIES = ("0002.jpg", "0005.jpg", "0008.jpg")
UNRELATED = "sacre_coeur/mapping/02928139_3448003521.jpg"


def split(data: Path, root: Path) -> tuple[Path, Path]:
    """root/map and root/queries of links to the fountain photos (and the unrelated query)."""
    images = data / "strecha_fountain_p11" / "images"
    folders = root / "map", root / "queries"
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    links = [(p, folders[p.name in QUERIES] / p.name) for p in sorted(images.glob("*.jpg"))]
    links.append((data / UNRELATED, folders[1] / "unrelated.jpg"))
    for target, link in links:
        if not link.is_symlink():
            link.symlink_to(target.resolve())
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=os.environ.get("SFM_REWEIGHT_DATA"))
    parser.add_argument("--matchers", nargs="+", default=["eloftr_reweight", "sift"])
    parser.add_argument("--output", type=Path, default=Path("outputs/loc-fountain"))
    args = parser.parse_args()
    if args.data is None or not (args.data / "strecha_fountain_p11").is_dir():
        sys.exit("error: give --data (or set SFM_REWEIGHT_DATA): a folder with strecha_fountain_p11 and sacre_coeur")
    map_dir, query_dir = split(args.data, args.output / "photos")
    gt = args.data / "strecha_fountain_p11" / "gt_dense_cameras"
    rows = {}
    for matcher in args.matchers:
        rows[matcher] = localize(map_dir, query_dir, args.output / matcher, matcher=matcher, ground_truth=gt)
    print("| matcher | map registered | localized | query | position error (m) | rotation error (deg) | inliers |")
    print("|---|---|---|---|---:|---:|---:|")
    for matcher, s in rows.items():
        errors = s["ground_truth"]["errors"]
        for q in (*QUERIES, "unrelated.jpg"):
            e = errors.get(q)
            cells = (
                ("not localized", "")
                if q in s["failed"]
                else (f"{e['position']:.4f}", f"{e['rotation_deg']:.3f}")
                if e
                else ("-", "-")
            )
            print(
                f"| {matcher} | {s['map_registered']}/{s['map_images']} | {s['localized']}/{s['queries']} | {q}"
                f" | {cells[0]} | {cells[1]}"
                f" | {s['inliers'][q]} |"
            )
    for matcher, s in rows.items():
        gt_scores = s["ground_truth"]
        print(
            f"{matcher}: recall {json.dumps(gt_scores['recall'])},"
            f" median position {gt_scores['median_position_error']:.4f} m,"
            f" rotation {gt_scores['median_rotation_error']:.3f} deg; {s['seconds']} s"
        )


if __name__ == "__main__":
    main()
