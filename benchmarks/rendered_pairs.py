"""How many of a network's matches are right on held-out rendered training pairs, per kind: the quick
judge of a candidate checkpoint on what a kind of training pairs teaches, before the SfM benchmarks.
`repeated` are facades of identical bays (train/synthetic_pairs.RepeatedFacadePairs), where a match
one bay off looks as good as the right one; `synthetic` are random walls and boxes.

    python benchmarks/rendered_pairs.py --weights default outputs/train/NAME/xfeat_step4000.pt \\
        [--kinds repeated synthetic] [--pairs 40] [--threshold 4] [--photos DATA/train_pool]

The pairs are the training data's (train/data_mix.build_sources, 640x480) drawn with a seed no recipe
trains on; `Matcher()` (the two-view default) matches them with each weights, and a match is right
when the rendered depth carries its first keypoint to within `--threshold` px of its second.
Prints a markdown table: per kind and weights, the matches per pair and the share of them right.
"""

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from sfm_reweight.matcher import Matcher
from sfm_reweight.train.data_mix import build_sources, collate
from sfm_reweight.train.recipes import DEFAULT_PHOTOS, confs
from sfm_reweight.train.warps import match_errors, warp_from_batch
from sfm_reweight.utils.conf import merge

HELD_OUT_SEED = 99_999  # training runs use seeds below 100, their validation pairs 10_000 above them


def share_right(matcher: Matcher, pair: dict[str, torch.Tensor], threshold: float) -> tuple[int, int]:
    """(matches, right matches) of `matcher` on one rendered pair (train/synthetic_pairs items)."""
    out = matcher(pair["image0"][0].numpy(), pair["image1"][0].numpy())
    kpts0, kpts1 = (torch.from_numpy(out[k]).double() for k in ("keypoints0", "keypoints1"))
    batch = {k: v.double() for k, v in collate([pair], torch.device("cpu")).items()}
    error, seen = match_errors(warp_from_batch(batch), kpts0, kpts1)
    return len(kpts0), int((seen & (error < threshold)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=["default"], help="checkpoints (default: the shipped one)")
    parser.add_argument("--kinds", nargs="+", default=["repeated", "synthetic"], choices=["repeated", "synthetic"])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="the training photos (textures)")
    args = parser.parse_args()
    if not args.photos.is_dir():
        raise SystemExit(f"{args.photos}: training photos not found; give the folder with --photos")
    data = confs["xfeat_repeated"]["data"]
    data = merge(data, {"folder": str(args.photos), "size": [640, 480], "seed": HELD_OUT_SEED})
    print("| pairs | weights | matches per pair | right |\n|---|---|---:|---:|")
    for kind in args.kinds:
        source = build_sources(merge(data, {"mix": {k: float(k == kind) for k in data["mix"]}}))[kind]
        pairs = [source[k] for k in range(args.pairs)]
        for weights in args.weights:
            matcher = Matcher(weights=weights)
            counts = [share_right(matcher, pair, args.threshold) for pair in tqdm(pairs, desc=f"{kind}, {weights}")]
            matches, right = (sum(c) for c in zip(*counts))
            print(f"| {kind} ({args.pairs}) | {weights} | {matches / args.pairs:.0f} | {right / max(matches, 1):.1%} |")


if __name__ == "__main__":
    with torch.inference_mode():
        main()
