"""Mappers at scale: pycolmap's incremental, global (GLOMAP) and hierarchical mapping on the same
matches of a rendered walk of N views round the demo square (`demo_scene.tour_cameras(N)`, exact
cameras), with retrieval pairs; time, registered images and camera-centre errors after the
similarity alignment (metres).

    python benchmarks/mapping_scale.py [--views 150] [--num_matched 10] [--mappers incremental global hierarchical] \\
        [--leaf_images 50] [--output outputs/mapping-scale]

The matches are made once (resumable) and every mapper reads them. `--leaf_images`: the
hierarchical mapper's largest cluster (its default, 500, would keep a few hundred views in one).
"""

import argparse
import json
import time
from pathlib import Path

from sfm_reweight import match_dense, reconstruction
from sfm_reweight.evaluate_sfm import camera_centre_errors, read_camera_centres
from sfm_reweight.pipelines.reconstruct import make_pairs
from sfm_reweight.scenes import demo_scene
from sfm_reweight.utils.pairs import list_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=150)
    parser.add_argument("--num_matched", type=int, default=10)
    parser.add_argument("--matcher", default="eloftr_reweight")
    parser.add_argument(
        "--mappers", nargs="+", default=["incremental", "global", "hierarchical"], choices=sorted(reconstruction.confs)
    )
    parser.add_argument("--leaf_images", type=int, default=50)
    parser.add_argument("--output", type=Path, default=Path("outputs/mapping-scale"))
    args = parser.parse_args()
    scene = args.output / "tour"
    images = demo_scene.render_views(scene, demo_scene.tour_cameras(args.views))
    names = list_images(images)
    pairs = args.output / "pairs.txt"
    make_pairs(pairs, images, names, args.output, "retrieval", args.num_matched)
    start = time.time()
    features, matches = match_dense.main(args.matcher, pairs, images, args.output)
    matching_seconds = time.time() - start
    truth = read_camera_centres(scene / "gt_cameras")
    rows = {}
    for mapper in args.mappers:
        conf = {"name": mapper}
        if mapper == "hierarchical":
            conf["mapper_options"] = {"clustering_options": {"leaf_max_num_images": args.leaf_images}}
        start = time.time()
        model = reconstruction.main(
            conf, args.output / f"sfm-{mapper}", images, pairs, features, matches, image_list=names
        )
        seconds = time.time() - start
        errors = (
            camera_centre_errors(model, truth)[0]
            if model is not None
            else {"registered": 0, "median": None, "max": None}
        )
        rows[mapper] = {
            "seconds": seconds,
            "registered": errors["registered"],
            "median": errors["median"],
            "max": errors["max"],
            "points": model.num_points3D() if model is not None else 0,
        }
        (args.output / "results.json").write_text(json.dumps(rows, indent=1))
    print(
        f"{len(names)} views, {args.num_matched} retrieval pairs per view,"
        f" {args.matcher}: matching {matching_seconds:.0f} s"
    )
    print("| mapper | seconds | registered | points | camera centres, median / max (m) |")
    print("|---|---:|---:|---:|---|")
    for mapper, r in rows.items():
        centres = "-" if r["median"] is None else f"{r['median']:.4f} / {r['max']:.4f}"
        print(f"| {mapper} | {r['seconds']:.0f} | {r['registered']}/{len(names)} | {r['points']} | {centres} |")


if __name__ == "__main__":
    main()
