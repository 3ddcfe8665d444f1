"""The cells of an image that take part in the matchability maps and the coarse matching.

With `match_coarse.top_k` = K (a number of cells, or a share of the grid's cells as a float), only
the K cells of each image with the highest reliability (XFeat's heatmap head, as XFeat* ranks its
dense features) enter the two dual softmaxes, so their cost falls from L0 x L1 to K x K cell pairs.
The other cells are unmatchable: their raw matchability is 0 and they have no coarse match. The
transformer still runs on the whole 1/8 grid.
"""

import math

import torch

# below every reliability in [0, 1]: padded cells are ranked last
PADDING_SCORE = -1.0


def top_cells(score: torch.Tensor, k: int | float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """score [N,1,h,w] (higher = kept first), mask [N,h,w] bool (True = image) or None, k a number of
    cells (int) or a share of the h*w cells (float in (0, 1)) -> cells [N,K] flat indices into the
    h*w grid, K = min(k, h*w) or ceil(k * h*w), in increasing order."""
    flat = score.flatten(1).float()
    if mask is not None:
        flat = flat.masked_fill(~mask.flatten(1), PADDING_SCORE)
    count = math.ceil(k * flat.shape[1]) if isinstance(k, float) else min(k, flat.shape[1])
    cells = flat.topk(count, dim=1).indices
    return cells.sort(dim=1).values


def gather_cells(x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """x [N,L,...] per-cell values, cells [N,K] -> [N,K,...]."""
    index = cells.reshape(*cells.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, index)


def scatter_cells(values: torch.Tensor, cells: torch.Tensor, length: int) -> torch.Tensor:
    """values [N,K] at cells [N,K] -> [N,length], 0 at every other cell."""
    return values.new_zeros(values.shape[0], length).scatter(1, cells, values)
