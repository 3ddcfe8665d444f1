"""Retrieval with nothing downloaded: VLAD of XFeat descriptors, VLAD of RootSIFT and COLMAP's
vocabulary tree, each indexing a whole image set; recall@k is the share of an image's k best other
images that are relevant to it, averaged over the images ("ceiling": the best possible, when an
image has fewer than k relevant others).

Sets (`--set`):
- pool: real photos of four scenes, strecha_fountain_p11 (11 images), sacre_coeur/mapping (10),
  Middlebury temple and dino sparse rings (16 each), linked in place into one temporary folder
  `<scene>/<file>`; relevant: the images of the same scene. Needs `--data` (default $SFM_REWEIGHT_DATA).
- tour: the demo square's 60-view tour (`demo_scene.tour_cameras`), rendered into `--output`;
  relevant: the views that truly overlap, i.e. that see at least `--min_overlap` of the image's
  surface (`synthetic_scene.covisibility`, from the rendered depth).

Each method runs in a fresh process: seconds per image for the whole stage (model loading, codebook
or tree learning included), and its peak resident memory above the RSS after the imports (Linux
VmHWM, reset through /proc/self/clear_refs).

    python benchmarks/retrieval.py --set pool --data /path/to/shared/data \\
        [--methods vlad_xfeat vocab_tree] [--json out.json]
    python benchmarks/retrieval.py --set tour
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCENES = {
    "fountain": "strecha_fountain_p11/images",
    "sacre_coeur": "sacre_coeur/mapping",
    "temple": "middlebury_mview/templeSparseRing",
    "dino": "middlebury_mview/dinoSparseRing",
}
METHODS = ("vlad_xfeat", "vlad_rootsift", "vocab_tree")
KS = (1, 5, 10)


def link_pool(data: Path, pool: Path) -> list[str]:
    """Symbolic links `pool/<scene>/<file>` to every image of the scenes; returns the names."""
    from sfm_reweight.utils.pairs import list_images

    names = []
    for scene, folder in SCENES.items():
        (pool / scene).mkdir(parents=True)
        for name in list_images(data / folder):
            (pool / scene / name).symlink_to((data / folder / name).resolve())
            names.append(f"{scene}/{name}")
    return names


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field + ":")).split()[1]) / 1024


def worker(method: str, pool: Path, out: Path, conf: dict) -> None:
    """Run one method on the pool (in this process) and print its pairs file, time and memory as JSON."""
    from sfm_reweight import extract_global, pairs_from_retrieval, pairs_from_vocab_tree

    with open("/proc/self/clear_refs", "w") as f:  # the peak from here on: the stage, not the imports
        f.write("5")
    base = rss_mib("VmRSS")
    start = time.time()
    pairs = out / f"pairs-{method}.txt"
    if method == "vocab_tree":
        pairs_from_vocab_tree.main({"name": "sift", **conf}, pool, pairs, max(KS))
    else:
        descriptors = extract_global.main({"name": method, **conf}, pool, out)
        pairs_from_retrieval.main(descriptors, pairs, max(KS))
    seconds = time.time() - start
    print(json.dumps({"pairs": str(pairs), "seconds": seconds, "peak_mib": rss_mib("VmHWM") - base}))


def recalls(pairs_file: Path, relevant: dict[str, set[str]]) -> dict[str, float]:
    """recall@k for KS from a pairs file listing each image's ranked others."""
    from sfm_reweight.utils.pairs import read_pairs

    ranked: dict[str, list[str]] = {n: [] for n in relevant}
    for query, other in read_pairs(pairs_file):
        ranked[query].append(other)
    return {f"R@{k}": float(np.mean([sum(o in relevant[q] for o in ranked[q][:k]) / k for q in relevant])) for k in KS}


def ceiling(relevant: dict[str, set[str]]) -> dict[str, float]:
    return {f"R@{k}": float(np.mean([min(k, len(others)) / k for others in relevant.values()])) for k in KS}


def pool_set(data: Path | None, folder: Path) -> dict[str, set[str]]:
    """The pool linked into `folder`; each image's relevant images: the others of its scene."""
    if data is None or not all((data / f).is_dir() for f in SCENES.values()):
        sys.exit(f"error: give --data (or set SFM_REWEIGHT_DATA): a folder with {', '.join(SCENES.values())}")
    names = link_pool(data, folder)
    return {n: {o for o in names if o != n and o.split("/")[0] == n.split("/")[0]} for n in names}


def tour_set(output: Path, min_overlap: float) -> tuple[Path, dict[str, set[str]]]:
    """The tour rendered into `output` (kept between runs); each view's relevant views: those that
    see at least `min_overlap` of its surface."""
    from sfm_reweight.scenes import demo_scene
    from sfm_reweight.scenes.synthetic_scene import covisibility

    views = demo_scene.tour_cameras()
    images = demo_scene.render_views(output, views, depth=True)
    names = sorted(p.name for p in images.iterdir())
    overlap = covisibility(views, [np.load(output / "depth" / f"{n}.npy") for n in names])
    return images, {
        n: {names[j] for j in np.nonzero(overlap[i] >= min_overlap)[0] if j != i} for i, n in enumerate(names)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("pool", "tour"), default="pool")
    parser.add_argument("--data", type=Path, default=os.environ.get("SFM_REWEIGHT_DATA"))
    parser.add_argument("--output", type=Path, default=Path("outputs/tour"), help="tour: where the views are rendered")
    parser.add_argument(
        "--min_overlap", type=float, default=0.1, help="tour: the share of an image's surface a relevant view sees"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--conf", type=json.loads, default={}, help="JSON overrides of every method's conf, e.g. '{\"seed\": 1}'"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "POOL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, pool, out = args.worker
        return worker(method, Path(pool), Path(out), args.conf)

    rows = []
    with tempfile.TemporaryDirectory(prefix="retrieval-") as tmp:
        out = Path(tmp, "out")
        if args.set == "pool":
            images, relevant = Path(tmp, "pool"), pool_set(args.data, Path(tmp, "pool"))
        else:
            images, relevant = tour_set(args.output, args.min_overlap)
        for method in args.methods:
            command = [
                sys.executable,
                __file__,
                "--worker",
                method,
                str(images),
                str(out),
                "--conf",
                json.dumps(args.conf),
            ]
            result = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            rows.append(
                {
                    "method": method,
                    **recalls(Path(result["pairs"]), relevant),
                    "s/image": result["seconds"] / len(relevant),
                    "peak MiB": result["peak_mib"],
                }
            )
        rows.append({"method": "ceiling", **ceiling(relevant), "s/image": float("nan"), "peak MiB": float("nan")})

    what = (
        f"{len(SCENES)} scenes ({', '.join(SCENES)})"
        if args.set == "pool"
        else f"the rendered tour, overlap >= {args.min_overlap:g}"
    )
    print(f"{len(relevant)} images, {what}")
    print(f"{'method':<14}" + "".join(f"{key:>10}" for key in rows[0] if key != "method"))
    for row in rows:
        print(
            f"{row['method']:<14}"
            + "".join(
                f"{value:>10.3f}" if key.startswith("R@") else f"{value:>10.2f}"
                for key, value in row.items()
                if key != "method"
            )
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
