"""Coarse matching: dual-softmax confidence between the 1/8 cells (all, or the top-k of each image),
threshold, border removal, mutual NN."""

import torch

from .dual_softmax import DualSoftmax


def coarse_dual_softmax(
    feat0: torch.Tensor,
    feat1: torch.Tensor,
    temperature: float,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
    chunk_elements: int = 2**19,
) -> DualSoftmax:
    """feat0 [N,L,C], feat1 [N,S,C], masks [N,L] / [N,S]: the dual softmax of sim = <f0, f1> / C / temperature,
    in fp32 even under autocast (as the official code)."""
    c = feat0.shape[-1]
    with torch.autocast(feat0.device.type, enabled=False):
        f0, f1 = feat0.float() / c**0.5, feat1.float() / c**0.5
        return DualSoftmax(f0, f1, 1.0 / temperature, mask0, mask1, chunk_elements)


def inner_cells(n: int, h: int, w: int, border: int, mask: torch.Tensor | None, device) -> torch.Tensor:
    """[N, h*w] bool: cells at least `border` cells inside the valid region (the mask's extent, or the grid)."""
    if mask is None:
        rows = torch.full((n,), h, device=device)
        cols = torch.full((n,), w, device=device)
    else:
        rows, cols = mask[:, :, 0].sum(1), mask[:, 0, :].sum(1)
    y = torch.arange(h, device=device)[None, :, None]
    x = torch.arange(w, device=device)[None, None, :]
    inside = (y >= border) & (y < rows[:, None, None] - border) & (x >= border) & (x < cols[:, None, None] - border)
    return inside.reshape(n, h * w)


@torch.no_grad()
def select_coarse_matches(
    dual_softmax: DualSoftmax,
    thr: float,
    border_rm: int,
    hw0: tuple[int, int],
    hw1: tuple[int, int],
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
    cells0: torch.Tensor | None = None,
    cells1: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """hw the coarse grid sizes; masks [N,h,w]; cells [N,K0] / [N,K1] the grid cells that the dual
    softmax's rows and columns stand for (top_k.py), or None: every cell, in order
    -> b_ids, i_ids, j_ids (grid cells), mconf [M].

    A match (i, j) has confidence P_ij above `thr`, lies `border_rm` cells inside both images and
    is the maximum of both its row and its column (the official rule, which differs from this
    only on exact ties of P).
    """
    row_max, row_arg, _, col_arg = dual_softmax.maxima()
    n, device = row_max.shape[0], row_max.device
    inner0 = inner_cells(n, *hw0, border_rm, mask0, device)
    inner1 = inner_cells(n, *hw1, border_rm, mask1, device)
    if cells0 is not None:
        inner0, inner1 = torch.gather(inner0, 1, cells0), torch.gather(inner1, 1, cells1)
    mutual = torch.gather(col_arg, 1, row_arg) == torch.arange(row_max.shape[1], device=device)
    keep = (row_max > thr) & mutual & inner0 & torch.gather(inner1, 1, row_arg)
    b_ids, i_ids = torch.where(keep)
    j_ids, mconf = row_arg[b_ids, i_ids], row_max[b_ids, i_ids]
    if cells0 is not None:
        i_ids, j_ids = cells0[b_ids, i_ids], cells1[b_ids, j_ids]
    return b_ids, i_ids, j_ids, mconf


def training_candidates(
    predicted: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ground_truth: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    num_cells: int,
    percent: float,
    pad_min: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The coarse matches fed to the fine stage in training (official scheme): `percent` of
    `num_cells`, predictions first (a random subset when too many), padded with at least `pad_min`
    random ground-truth matches, so that the fine heads always see correct windows."""
    num_train = max(int(num_cells * percent), pad_min + 1)
    n_pred, n_gt = len(predicted[0]), len(ground_truth[0])
    device = predicted[0].device
    if n_pred <= num_train - pad_min:
        keep = torch.arange(n_pred, device=device)
    else:
        keep = torch.randint(n_pred, (num_train - pad_min,), device=device)
    pad = torch.randint(n_gt, (max(num_train - n_pred, pad_min),), device=device) if n_gt else keep[:0]
    return tuple(torch.cat([p[keep], g[pad]]) for p, g in zip(predicted, ground_truth))


def cell_positions(ids: torch.Tensor, w: int, stride: float) -> torch.Tensor:
    """Flat cell indices [M] on a grid of width w -> (x, y) [M,2]: the input pixel each cell is centred on.

    Every stride-2 conv of the backbone (3x3, padding 1) is centred, so cell x sits on pixel stride * x.
    """
    return torch.stack([ids % w, ids // w], dim=1) * stride
