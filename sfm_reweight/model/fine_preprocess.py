"""Fine features: an FPN fusing the coarse (1/8), 1/4 and 1/2 maps into one full-resolution map,
and the local windows cut out of it around every coarse match."""

import torch
import torch.nn.functional as F
from torch import nn


def conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, bias=False)


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class FinePreprocess(nn.Module):
    """in_dims: channels of the backbone maps at 1/2 and 1/4 and of the coarse features at 1/8;
    dims (d0, d1, d2): the FPN's widths there (EfficientLoFTR: both the backbone's widths); the fine
    map has d0 channels."""

    def __init__(self, in_dims: list[int], dims: list[int]):
        super().__init__()
        c0, c1, c2 = in_dims
        d0, d1, d2 = dims
        self.layer3_outconv = conv1x1(c2, d2)
        self.layer2_outconv = conv1x1(c1, d2)
        self.layer2_outconv2 = nn.Sequential(conv3x3(d2, d2), nn.BatchNorm2d(d2), nn.LeakyReLU(), conv3x3(d2, d1))
        self.layer1_outconv = conv1x1(c0, d1)
        self.layer1_outconv2 = nn.Sequential(conv3x3(d1, d1), nn.BatchNorm2d(d1), nn.LeakyReLU(), conv3x3(d1, d0))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")

    def forward(self, feat_c: torch.Tensor, x2: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """feat_c [N,c2,H/8,W/8], x2 [N,c1,H/4,W/4], x1 [N,c0,H/2,W/2] -> fine map [N,d0,H,W]."""
        up = upsample2(self.layer3_outconv(feat_c))
        up = upsample2(self.layer2_outconv2(self.layer2_outconv(x2) + up))
        return upsample2(self.layer1_outconv2(self.layer1_outconv(x1) + up))


def crop_windows(fine: torch.Tensor, b_ids: torch.Tensor, cell_ids: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """Square windows of `size` pixels of fine [N,C,H,W] for cells (b, i) of the 1/stride grid -> [M, size*size, C].

    The window of cell (r, c) starts at pixel (stride*r - p, stride*c - p) with p = (size - stride) / 2,
    zero outside the image: the same values as F.unfold(kernel=size, stride=stride, padding=p),
    gathered for the M requested cells only.
    """
    pad = (size - stride) // 2
    grid_w = fine.shape[-1] // stride
    fine = F.pad(fine, [pad] * 4).permute(0, 2, 3, 1)  # [N, H+2p, W+2p, C]
    offsets = torch.arange(size, device=fine.device)
    rows = (cell_ids // grid_w * stride)[:, None] + offsets  # [M, size], in padded coordinates
    cols = (cell_ids % grid_w * stride)[:, None] + offsets
    windows = fine[b_ids[:, None, None], rows[:, :, None], cols[:, None, :]]  # [M, size, size, C]
    return windows.flatten(1, 2)
