"""Ground truth for the matcher's heads from a warp (EfficientLoFTR's coarse and fine supervision).

Coarse: cell i of image 0 (centred on pixel 8 * (x, y)) is warped into image 1 and rounded to the
nearest cell j; (i, j) is a ground-truth match when the warp is valid and the round trip j -> i
holds. Unlike the official code, validity (depth consistency, occluders) is also required at the
coarse level. Each match is weighted by the overlap (1 - 2|dx|)(1 - 2|dy|) of the rounding
residual. A cell is *matchable* when it has a ground-truth match: the labels of the matchability
maps. A cell has *no correspondent* when what it shows is certainly absent from the other image
(outside it by more than a cell, occluded, on an occluder): no match of it can be right
(`Warp.no_correspondent`). Cells that fail only the round trip are neither.

Fine: for each coarse match fed to the fine stage, pixel u of image 0's 8x8 window (offset
u - 3.5 from the cell) is warped and rounded to pixel v of image 1's inner 8x8 window; the
rounding residual in [-0.5, 0.5] is the sub-pixel target.
"""

from dataclasses import dataclass

import torch

from ..model.eloftr import COARSE_STRIDE
from .warps import Warp


@dataclass
class CoarseSupervision:
    b_ids: torch.Tensor  # [G] ground-truth coarse matches (b, i, j)
    i_ids: torch.Tensor
    j_ids: torch.Tensor
    weights: torch.Tensor  # [G] overlap weights in [0,1]
    matchable0: torch.Tensor  # [N,L0] bool
    matchable1: torch.Tensor  # [N,L1] bool
    unmatched0: torch.Tensor  # [N,L0] bool: no correspondent in image 1
    unmatched1: torch.Tensor  # [N,L1] bool: no correspondent in image 0


@dataclass
class FineSupervision:
    m_ids: torch.Tensor  # [P] index of the coarse match
    u_ids: torch.Tensor  # [P] pixel in image 0's window (row-major in W x W)
    v_ids: torch.Tensor  # [P] pixel in image 1's inner window
    offsets: torch.Tensor  # [P,2] sub-pixel target (x, y) in [-0.5, 0.5]
    weights: torch.Tensor  # [P]


def cell_points(n: int, h: int, w: int, stride: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of all cells of an h x w grid for n pairs: points [n*h*w, 2] (x, y) and their pair index."""
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    points = torch.stack([x, y], -1).reshape(-1, 2).float() * stride
    return points.repeat(n, 1), torch.arange(n, device=device).repeat_interleave(h * w)


def nearest_cell(warped: torch.Tensor, valid: torch.Tensor, h: int, w: int, stride: int):
    """Warped points [K,2] -> flat index of the nearest cell (-1 when invalid or outside) and residual [K,2]."""
    c = warped / stride
    r = c.round()
    inside = valid & (r[:, 0] >= 0) & (r[:, 0] < w) & (r[:, 1] >= 0) & (r[:, 1] < h)
    ids = torch.where(inside, (r[:, 1] * w + r[:, 0]).long(), torch.full_like(inside, -1, dtype=torch.long))
    return ids, c - r


def overlap_weight(residual: torch.Tensor) -> torch.Tensor:
    return (1 - 2 * residual[:, 0].abs()) * (1 - 2 * residual[:, 1].abs())


@torch.no_grad()
def coarse_supervision(
    warp: Warp,
    n: int,
    hw0: tuple[int, int],
    hw1: tuple[int, int],
    stride: int = COARSE_STRIDE,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
) -> CoarseSupervision:
    """hw0/hw1 the coarse grids; masks [N,h,w] bool coarse padding masks (True = image)."""
    device = warp.device
    (h0, w0), (h1, w1) = hw0, hw1
    p0, b0 = cell_points(n, h0, w0, stride, device)
    p1, b1 = cell_points(n, h1, w1, stride, device)
    inverse = warp.inverse()
    warped01, valid01 = warp(p0, b0)
    warped10, valid10 = inverse(p1, b1)
    unmatched0 = warp.no_correspondent(p0, b0, stride)
    unmatched1 = inverse.no_correspondent(p1, b1, stride)
    if mask0 is not None:
        valid01 &= mask0.reshape(-1)
        valid10 &= mask1.reshape(-1)
        unmatched0 &= mask0.reshape(-1)
        unmatched1 &= mask1.reshape(-1)
    j_of_i, residual = nearest_cell(warped01, valid01, h1, w1, stride)
    i_of_j, _ = nearest_cell(warped10, valid10, h0, w0, stride)
    j_of_i, residual = j_of_i.reshape(n, -1), residual.reshape(n, -1, 2)
    i_of_j = i_of_j.reshape(n, -1)
    back = torch.gather(i_of_j, 1, j_of_i.clamp(min=0))
    ok = (j_of_i >= 0) & (back == torch.arange(h0 * w0, device=device))
    b_ids, i_ids = torch.where(ok)
    j_ids = j_of_i[b_ids, i_ids]
    matchable1 = torch.zeros(n, h1 * w1, dtype=torch.bool, device=device)
    matchable1[b_ids, j_ids] = True
    return CoarseSupervision(
        b_ids,
        i_ids,
        j_ids,
        overlap_weight(residual[b_ids, i_ids]),
        ok,
        matchable1,
        unmatched0.reshape(n, -1),
        unmatched1.reshape(n, -1),
    )


@torch.no_grad()
def fine_supervision(
    warp: Warp,
    b_ids: torch.Tensor,
    i_ids: torch.Tensor,
    j_ids: torch.Tensor,
    w0: int,
    w1: int,
    window: int = 8,
    stride: int = COARSE_STRIDE,
) -> FineSupervision:
    """Targets for coarse matches (b, i, j) [M] on coarse grids of widths w0, w1."""
    device = b_ids.device
    u = torch.arange(window * window, device=device)
    offset = torch.stack([u % window, u // window], -1).float() - (window / 2 - 0.5)  # [WW,2]
    cell0 = torch.stack([i_ids % w0, i_ids // w0], -1).float() * stride
    cell1 = torch.stack([j_ids % w1, j_ids // w1], -1).float() * stride
    points = (cell0[:, None] + offset).reshape(-1, 2)
    warped, valid = warp(points, b_ids.repeat_interleave(window * window))
    local = warped.reshape(-1, window * window, 2) - cell1[:, None] + (window / 2 - 0.5)  # window coordinates
    v = local.round()
    valid = valid.reshape(-1, window * window) & ((v >= 0) & (v <= window - 1)).all(-1)
    m_ids, u_ids = torch.where(valid)
    v_xy = v[m_ids, u_ids].long()
    residual = local[m_ids, u_ids] - v[m_ids, u_ids]
    return FineSupervision(m_ids, u_ids, v_xy[:, 1] * window + v_xy[:, 0], residual, overlap_weight(residual))
