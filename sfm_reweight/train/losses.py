"""Losses: EfficientLoFTR's (coarse focal, fine focal, sub-pixel L2; weights 1 / 1 / 0.25) plus the
binary matchable / non-matchable loss on the matchability maps (arXiv 2505.02161) and, optionally,
a coarse loss on the cells that have no correspondent at all.

All focal terms use positives only (alpha 0.25, gamma 2), weighted by the overlap weights. So the
official coarse loss never sees a cell outside the overlap: nothing keeps such a cell from matching
confidently. `coarse_negative_loss` is that missing term (off by default; what it did in
training: docs/training_lite.md).
"""

import torch

from ..model.dual_softmax import DualSoftmax
from ..model.fine_matching import subpixel_offsets
from .supervision import CoarseSupervision, FineSupervision

EPS = 1e-6


def focal_positive(p: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    p = p.clamp(EPS, 1 - EPS)
    return -alpha * (1 - p) ** gamma * p.log()


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp(min=EPS)


def coarse_loss(dual_softmax: DualSoftmax, sup: CoarseSupervision) -> torch.Tensor:
    """Focal loss on the dual-softmax confidence of the ground-truth coarse matches."""
    return weighted_mean(focal_positive(dual_softmax.at(sup.b_ids, sup.i_ids, sup.j_ids)), sup.weights)


def coarse_negative_loss(dual_softmax: DualSoftmax, sup: CoarseSupervision) -> torch.Tensor:
    """Binary cross-entropy -log(1 - max P) of the best match of every cell without a correspondent
    (rows of image 0, columns of image 1): whatever such a cell matches is wrong, so its best
    dual-softmax confidence is pushed toward 0. Self-limiting: the gradient to the logits scales
    with P, so cells already far below the matching threshold are left alone. The best partners are
    found without a graph and P is differentiated at them only (the same gradient as through a max,
    without a backward pass over every chunk of the similarity matrix)."""
    with torch.no_grad():
        _, row_arg, _, col_arg = dual_softmax.maxima()
    b0, i0 = torch.where(sup.unmatched0)
    b1, j1 = torch.where(sup.unmatched1)
    p = torch.cat([dual_softmax.at(b0, i0, row_arg[b0, i0]), dual_softmax.at(b1, col_arg[b1, j1], j1)])
    if len(p) == 0:
        return dual_softmax.row_max.sum() * 0.0
    return -(1 - p).clamp(min=EPS).log().mean()


def fine_loss(conf_matrix_f: torch.Tensor, sup: FineSupervision) -> torch.Tensor:
    """Focal loss on the stage-1 dual softmax [M,WW,WW] at the ground-truth pixel pairs."""
    return weighted_mean(focal_positive(conf_matrix_f[sup.m_ids, sup.u_ids, sup.v_ids]), sup.weights)


def subpixel_loss(
    sim_matrix_ff: torch.Tensor, sup: FineSupervision, temperature: float, official_block: bool = False
) -> torch.Tensor:
    """L2 between the stage-2 expectation on the 3x3 block at each ground-truth pixel (indexed as at
    inference, fine_matching.subpixel_offsets) and the sub-pixel target."""
    if len(sup.m_ids) == 0:
        return sim_matrix_ff.sum() * 0.0
    expected = subpixel_offsets(sim_matrix_ff, sup.m_ids, sup.u_ids, sup.v_ids, temperature, official_block)
    return ((expected - sup.offsets) ** 2).sum(-1).mean()


def matchability_loss(
    m0: torch.Tensor, m1: torch.Tensor, sup: CoarseSupervision, mask0: torch.Tensor | None, mask1: torch.Tensor | None
) -> torch.Tensor:
    """Binary cross-entropy of the maps [N,h,w] against "has a ground-truth coarse match", padding
    ignored; matchable and non-matchable cells weigh half each, whatever their proportion."""
    p = torch.cat([m0.flatten(1), m1.flatten(1)], 1).clamp(EPS, 1 - EPS)
    label = torch.cat([sup.matchable0, sup.matchable1], 1)
    valid = torch.ones_like(label) if mask0 is None else torch.cat([mask0.flatten(1), mask1.flatten(1)], 1)
    positive, negative = label & valid, ~label & valid
    loss = 0.0
    if positive.any():
        loss = loss + 0.5 * -p[positive].log().mean()
    if negative.any():
        loss = loss + 0.5 * -(1 - p[negative]).log().mean()
    return torch.as_tensor(loss, device=p.device)
