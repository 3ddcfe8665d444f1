"""Validation of a network on a training configuration's fixed synthetic homography pairs (and real
Oxford pairs in the loop): homography AUC, precision, fine error, matchability AUROC, matches
without a correspondent; at the training loop's coarse threshold or at others, of a training state
(`last.pt`, its moving average) or a checkpoint (`trainer --validate`)."""

import copy
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..metrics import auroc, corner_error, error_auc, ransac_homography
from ..model.config import resolve_model_conf
from ..model.eloftr import COARSE_STRIDE, ELoFTR
from ..model.weights import load_weights, read_checkpoint
from ..utils.conf import merge
from .data_mix import build_sources
from .moving_average import averaged_model
from .supervision import coarse_supervision
from .warps import HomographyWarp, match_errors

logger = logging.getLogger(__name__)


@torch.no_grad()
def validate(model: ELoFTR, pairs: list[dict], device: torch.device) -> dict[str, float]:
    """Homography AUC@3/5/10 px (corner error of a RANSAC fit), matches and precision@3px per pair,
    the median error of the matches within 3 px over all pairs (the fine stage's accuracy: 0.40 px
    for points exact to the pixel, rounding alone), and the AUROC of the matchability maps against
    the ground-truth matchable cells of all pairs (0.5: the maps carry no information; nan when
    reweighting is off), and the share of matches whose image-0 point has no correspondent in image 1
    (`Warp.no_correspondent`, one coarse cell of margin): matches that cannot be right."""
    was_training = model.training
    model.eval()
    errors, matches, precision, map_scores, map_labels, fine_errors, unmatched = [], [], [], [], [], [], []
    for item in pairs:
        out = model(item["image0"][None].to(device), item["image1"][None].to(device))
        k0, k1 = out["keypoints0"].cpu().numpy(), out["keypoints1"].cpu().numpy()
        H = item["H_0to1"].numpy().astype(np.float64)
        h, w = item["image0"].shape[-2:]
        errors.append(corner_error(ransac_homography(k0, k1), H, w, h))
        matches.append(len(k0))
        warp = HomographyWarp(item["H_0to1"][None], item["valid0"][None], item["valid1"][None])
        if len(k0):
            distance, valid = match_errors(warp, torch.from_numpy(k0), torch.from_numpy(k1))
            correct = (distance <= 3) & valid
            precision.append(float(correct.sum() / len(k0)))
            fine_errors.append(distance[correct])
            zeros = torch.zeros(len(k0), dtype=torch.long)
            unmatched.append(float(warp.no_correspondent(torch.from_numpy(k0), zeros, COARSE_STRIDE).float().mean()))
        if out["matchability0"] is not None:
            grids = [tuple(out[f"matchability{k}"].shape[-2:]) for k in (0, 1)]
            gt = coarse_supervision(warp, 1, *grids, COARSE_STRIDE)
            map_scores += [out["matchability0"].flatten().cpu(), out["matchability1"].flatten().cpu()]
            map_labels += [gt.matchable0.flatten(), gt.matchable1.flatten()]
    model.train(was_training)
    auc = error_auc(errors, [3, 5, 10])
    fine_errors = torch.cat(fine_errors) if fine_errors else torch.zeros(0)
    map_auroc = auroc(torch.cat(map_scores).numpy(), torch.cat(map_labels).numpy()) if map_scores else float("nan")
    return {
        "auc@3": auc[3],
        "auc@5": auc[5],
        "auc@10": auc[10],
        "matches": float(np.mean(matches)),
        "precision@3px": float(np.mean(precision)) if precision else 0.0,
        "fine_error_px": float(fine_errors.median()) if len(fine_errors) else float("nan"),
        "matchability_auroc": map_auroc,
        "no_correspondent_share": float(np.mean(unmatched)) if unmatched else 0.0,
    }


def validation_pairs(conf: dict) -> list[dict]:
    """The fixed synthetic validation set of a training configuration: `val_pairs` homography
    pairs drawn with a seed no training step uses."""
    data = build_sources({**conf["data"], "mix": {"homography": 1.0}}, seed_offset=10_000)["homography"]
    return [data[k] for k in range(conf["val_pairs"])]


def with_coarse_threshold(model_conf: str | dict, coarse_threshold: float | None) -> str | dict:
    """A model configuration with another coarse threshold (None: as it is)."""
    if coarse_threshold is None:
        return model_conf
    return merge(resolve_model_conf(model_conf), {"match_coarse": {"thr": coarse_threshold}})


def at_coarse_threshold(model: ELoFTR, coarse_threshold: float) -> ELoFTR:
    """A copy of `model` that keeps coarse matches above another threshold. Copied, not built anew:
    building would draw initial weights from the global RNG, and a resumed run would then differ."""
    clone = copy.deepcopy(model)
    clone.conf["match_coarse"]["thr"] = coarse_threshold
    return clone


def validate_state(last: Path, coarse_thresholds: list[float]) -> list[dict[str, float]]:
    """Validation metrics of a training state's averaged weights at each coarse threshold: early in
    training, confidences stay below the default 0.2 long before the matches become right."""
    state = read_checkpoint(last)

    def model_at(thr: float) -> ELoFTR:
        return averaged_model(state, with_coarse_threshold(state["conf"]["model"], thr))

    return validate_at_thresholds(model_at, validation_pairs(state["conf"]), coarse_thresholds, state["step"])


def validate_checkpoint(weights: Path, conf: dict, coarse_thresholds: list[float]) -> list[dict[str, float]]:
    """The same for a checkpoint (e.g. an export or the shipped weights) on `conf`'s validation pairs."""

    def model_at(thr: float) -> ELoFTR:
        model = ELoFTR(with_coarse_threshold(conf["model"], thr))
        load_weights(model, weights)
        return model

    return validate_at_thresholds(model_at, validation_pairs(conf), coarse_thresholds, None)


def validate_at_thresholds(
    model_at: Callable[[float], ELoFTR], pairs: list[dict], coarse_thresholds: list[float], step: int | None
) -> list[dict[str, float]]:
    """`validate` of the network `model_at(thr)` for each coarse threshold, one row each."""
    rows = []
    for thr in coarse_thresholds:
        rows.append({"step": step, "thr": thr, **validate(model_at(thr), pairs, torch.device("cpu"))})
        logger.info("%s", rows[-1])
    return rows
