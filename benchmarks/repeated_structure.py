"""How many of a matcher's matches on the repeated-structure courtyard (scenes/repeated_scene.py) are
right, by how far apart the two views stand: the figure under the courtyard's camera errors, and
one that does not flip with the mapper's choices.

Each matcher's matches come from `sfm-reweight reconstruct` on the rendered courtyard (exhaustive
pairs, no track refinement, run as in benchmarks/sfm_accuracy.py). A match is right when the
rendered depth carries its first keypoint to within `--threshold` px of its second one
(train/warps.DepthWarp, occlusion-checked); the views stand 0.9 m apart, a window bay is 2 m wide.

    python benchmarks/repeated_structure.py [--matchers eloftr_reweight sift] [--weights W] \\
        [--threshold 4] [--output outputs/repeated_structure]

`--weights`: a checkpoint for our network instead of the shipped one, e.g. a training run's export;
its runs go to folders named after it.

Prints a markdown table: per view gap, the pairs, the ground-truth overlap (share of one view's
surface the other sees), and per matcher the matches per pair and the share of them that are right,
before and after COLMAP's geometric verification (the inliers the mapper is given).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from sfm_accuracy import run, run_dir

from sfm_reweight.colmap import verified_matches
from sfm_reweight.io import read_keypoints, read_matches
from sfm_reweight.scenes import repeated_scene
from sfm_reweight.scenes.synthetic_scene import covisibility, render
from sfm_reweight.train.warps import DepthWarp, match_errors
from sfm_reweight.utils import atomic


def right_matches(
    depths: list[np.ndarray], cameras: list, i: int, j: int, kpts0: np.ndarray, kpts1: np.ndarray, threshold: float
) -> np.ndarray:
    """[M] bool: keypoints kpts0 [M,2] of view i (pixel centres) carried by the rendered depth to
    within `threshold` px of kpts1 [M,2] in view j, and seen there."""
    T = cameras[j].pose @ np.linalg.inv(cameras[i].pose)
    warp = DepthWarp(
        *(torch.from_numpy(np.asarray(x, np.float64))[None] for x in (depths[i], depths[j])),
        *(torch.from_numpy(x)[None] for x in (cameras[i].K, cameras[j].K, T)),
    )
    error, seen = match_errors(warp, *(torch.from_numpy(k.astype(np.float64)) for k in (kpts0, kpts1)))
    return (seen & (error < threshold)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matchers", nargs="+", default=["eloftr_reweight", "sift"])
    parser.add_argument("--weights", type=Path, help="checkpoint for our network (default: the shipped weights)")
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--output", type=Path, default=Path("outputs/repeated_structure"))
    args = parser.parse_args()
    image_dir = repeated_scene.render_repeated_scene(args.output / "courtyard-scene")
    cameras, rectangles = repeated_scene.cameras(), repeated_scene.scene()
    depths = [render(rectangles, camera)[1] for camera in cameras]
    overlap = covisibility(cameras, depths)
    names = sorted(p.name for p in image_dir.iterdir())
    tables = {}
    for matcher in args.matchers:
        folder = run_dir(args.output, matcher, matcher, args.weights)
        summary, _ = run(image_dir, image_dir.parent / "gt_cameras", matcher, "none", folder, args.weights)
        keypoints = {name: read_keypoints(Path(summary["features"]), name) for name in names}
        verified = verified_matches(folder / "sfm" / "database.db")
        by_gap: dict[int, list[list[int]]] = {}
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                raw, _ = read_matches(Path(summary["matches"]), names[i], names[j])
                inliers = verified.get((names[i], names[j]))
                if inliers is None:  # stored the other way round, or not verified
                    inliers = verified.get((names[j], names[i]), np.zeros((0, 2), int))[:, ::-1]
                row = []
                for pairs in (raw, inliers):
                    kpts0, kpts1 = keypoints[names[i]][pairs[:, 0]], keypoints[names[j]][pairs[:, 1]]
                    right = right_matches(depths, cameras, i, j, kpts0, kpts1, args.threshold)
                    row += [len(right), int(right.sum())]
                by_gap.setdefault(j - i, []).append(row)
        tables[matcher] = by_gap
        total = np.sum([row for rows in by_gap.values() for row in rows], axis=0)
        print(
            f"{matcher}: {total[1]} of {total[0]} matches right ({total[1] / max(total[0], 1):.1%}),"
            f" {total[3]} of {total[2]} verified ({total[3] / max(total[2], 1):.1%})",
            flush=True,
        )
    columns = " | ".join(f"{m}: matches / right | verified / right" for m in args.matchers)
    print(f"\n| view gap | pairs | overlap | {columns} |")
    print("|---:|---:|---:|" + "---:|---:|" * len(args.matchers))
    for gap in range(1, len(names)):
        share = np.mean([overlap[i, i + gap] for i in range(len(names) - gap)])
        cells = []
        for matcher in args.matchers:
            rows = np.array(tables[matcher][gap])
            n, right, n_verified, right_verified = rows.sum(0)
            cells.append(f"{n / len(rows):.0f} / {right / max(n, 1):.0%}")
            cells.append(f"{n_verified / len(rows):.0f} / {right_verified / max(n_verified, 1):.0%}")
        print(f"| {gap} | {len(rows)} | {share:.0%} | " + " | ".join(cells) + " |")
    atomic.write_json(tables, args.output / "table.json")


if __name__ == "__main__":
    main()
