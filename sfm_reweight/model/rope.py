"""2-D rotary position encoding of EfficientLoFTR's self-attention layers."""

import math

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): rotation by 90 degrees of interleaved pairs."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(dim=-1)
    return torch.stack((-x2, x1), dim=-1).flatten(start_dim=-2)


class RoPE2d(nn.Module):
    """Rotates channels (4k, 4k+1) by i*theta_k and (4k+2, 4k+3) by j*theta_k, theta_k = 10000^(-k/(C/4)).

    (i, j) are the 1-based row and column on the aggregated (1/32) grid, multiplied by
    train/test resolution (`npe = [train_h, train_w, test_h, test_w]`). The sin/cos tables are
    rounded to fp16 as in the official code: without that, outputs are not bit-exact. Tables are
    built for the grid at hand (no 256x256 size limit) and cached per grid size and device.
    """

    def __init__(self, d_model: int, npe: list[int]):
        super().__init__()
        self.d_model = d_model
        self.npe = list(npe)
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [1,h,w,C] float32 holding fp16-rounded values."""
        key = (h, w, str(device))
        if key not in self._tables:
            train_h, train_w, test_h, test_w = self.npe
            i = torch.ones(h, w).cumsum(0).unsqueeze(-1) * train_h / test_h
            j = torch.ones(h, w).cumsum(1).unsqueeze(-1) * train_w / test_w
            quarter = self.d_model // 4
            theta = torch.exp(torch.arange(0, quarter, 1).float() * (-math.log(10000.0) / quarter))
            angles = torch.stack([i * theta, j * theta], dim=-1).flatten(-2)  # [h,w,C/2]: i0, j0, i1, j1, ...
            cos = angles.cos().half().float().repeat_interleave(2, dim=-1)[None]
            sin = angles.sin().half().float().repeat_interleave(2, dim=-1)[None]
            self._tables[key] = (cos.to(device), sin.to(device))
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,h,w,C] -> same shape, rotated."""
        cos, sin = self.tables(x.shape[1], x.shape[2], x.device)
        return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)
