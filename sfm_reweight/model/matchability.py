"""Matchability maps: how likely each coarse cell is to have a correspondent in the other image.

Computed once per pair from the L2-normalised coarse backbone features, before the transformer
(arXiv 2505.02161). With S the cosine-similarity matrix between the cells of the two images:

- "max_cosine" (the paper's v1): m0[i] = clamp(max_j S[i,j], 0, 1), m1[j] = clamp(max_i S[i,j], 0, 1);
- "dual_softmax" (default): P = softmax_j(S/t) * softmax_i(S/t), m0[i] = max_j P[i,j], m1[j] = max_i P[i,j].

The default is dual_softmax because the backbone ends in a ReLU: its features are non-negative,
so every cosine lies in [0, 1] and the max cosine is close to 1 almost everywhere, leaving the
binary matchability loss little to work with. The dual softmax is high only where a cell has a
distinctive mutual partner. Both are computed in row chunks (see dual_softmax.py): the maps never
hold more than one similarity matrix, the size of the coarse score matrix the network builds next.

The raw map m then goes through a learned monotone calibration, p = sigmoid(a logit(m) + b)
(`MatchabilityCalibration`, identity at a = 1, b = 0), the usual fix when
the classification stalls: with 10^3-10^4 cells competing, a trained network's dual-softmax maxima
sit near 1e-3 almost everywhere, so the binary loss on m itself stayed above that of a constant 0.5
and the attention saw near-zero maps. The two scalars set the operating point; the loss gradient
still reaches the backbone through m.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .dual_softmax import MASKED_LOGIT, DualSoftmax
from .top_k import gather_cells, scatter_cells


def matchability_maps(
    feat0: torch.Tensor,
    feat1: torch.Tensor,
    kind: str = "dual_softmax",
    temperature: float = 0.1,
    chunk_elements: int = 2**19,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
    cells0: torch.Tensor | None = None,
    cells1: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """feat [N,C,H,W] coarse backbone features; mask [N,H,W] bool (True = image) or None; cells
    [N,K0] / [N,K1] flat indices of the only cells that take part (top_k.py), or None: all.

    Returns m0 [N,H0,W0], m1 [N,H1,W1] in [0,1], zero on padding and outside `cells`. Differentiable.
    """
    n, _, h0, w0 = feat0.shape
    h1, w1 = feat1.shape[-2:]
    v0 = None if mask0 is None else mask0.flatten(1)
    v1 = None if mask1 is None else mask1.flatten(1)
    with torch.autocast(feat0.device.type, enabled=False):
        f0 = F.normalize(feat0.float().flatten(2).transpose(1, 2), dim=-1)  # [N,L,C]
        f1 = F.normalize(feat1.float().flatten(2).transpose(1, 2), dim=-1)  # [N,S,C]
        if cells0 is None:
            m0, m1 = raw_maps(f0, f1, v0, v1, kind, temperature, chunk_elements)
        else:
            s0, s1 = gather_cells(f0, cells0), gather_cells(f1, cells1)
            u0 = None if v0 is None else gather_cells(v0, cells0)
            u1 = None if v1 is None else gather_cells(v1, cells1)
            m0, m1 = raw_maps(s0, s1, u0, u1, kind, temperature, chunk_elements)
            m0, m1 = scatter_cells(m0, cells0, h0 * w0), scatter_cells(m1, cells1, h1 * w1)
    if mask0 is not None:  # padded cells: exactly 0 (the dual softmax leaves them a uniform value)
        m0, m1 = m0 * v0, m1 * v1
    return m0.reshape(n, h0, w0), m1.reshape(n, h1, w1)


def raw_maps(f0, f1, v0, v1, kind: str, temperature: float, chunk_elements: int) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 [N,L,C], f1 [N,S,C] normalised features, masks [N,L] / [N,S] or None -> m0 [N,L], m1 [N,S]."""
    if kind == "dual_softmax":
        m0, _, m1, _ = DualSoftmax(f0, f1, 1.0 / temperature, v0, v1, chunk_elements).maxima()
        return m0, m1
    return max_cosine(f0, f1, v0, v1, chunk_elements)


def max_cosine(f0, f1, v0, v1, chunk_elements: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = max(1, chunk_elements // f1.shape[1])
    m0, m1 = [], None
    for start in range(0, f0.shape[1], rows):
        s = f0[:, start : start + rows] @ f1.transpose(1, 2)
        if v0 is not None:
            s = s.masked_fill(~(v0[:, start : start + rows, None] & v1[:, None, :]), MASKED_LOGIT)
        m0.append(s.amax(2))
        m1 = s.amax(1) if m1 is None else torch.maximum(m1, s.amax(1))
    return torch.cat(m0, 1).clamp(0, 1), m1.clamp(0, 1)


class MatchabilityCalibration(nn.Module):
    LOGIT_EPS = 1e-6

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.offset = nn.Parameter(torch.zeros(()))

    def reset(self) -> None:
        """Identity: p = m (up to the clamp of m to [1e-6, 1 - 1e-6])."""
        nn.init.ones_(self.scale)
        nn.init.zeros_(self.offset)

    def forward(self, m: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """m [N,h,w] raw map in [0,1]; mask [N,h,w] bool (True = image) or None -> p [N,h,w], 0 on padding."""
        p = torch.sigmoid(self.scale * torch.logit(m.float(), eps=self.LOGIT_EPS) + self.offset)
        return p if mask is None else p * mask
