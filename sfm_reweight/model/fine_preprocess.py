"""Fine features: an FPN fusing the coarse (1/8), 1/4 and 1/2 maps into one full-resolution map,
and the local windows cut out of it around every coarse match.

The FPN's last stage (two 3x3 convs at 1/2 resolution, then a x2 bilinear upsampling) costs most
and is needed only under the windows: `FinePreprocess.windows` runs it on a block of the 1/2-res
input around each window and gives the same windows as cutting them out of the whole map
(`match_fine.local_fpn`, inference).
"""

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
        return upsample2(self.layer1_outconv2(self.half_resolution_input(feat_c, x2, x1)))

    def half_resolution_input(self, feat_c: torch.Tensor, x2: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The input of the last stage: [N,d1,H/2,W/2] (same arguments as `forward`)."""
        up = upsample2(self.layer3_outconv(feat_c))
        up = upsample2(self.layer2_outconv2(self.layer2_outconv(x2) + up))
        return self.layer1_outconv(x1) + up

    def windows(
        self, half: torch.Tensor, b_ids: torch.Tensor, cell_ids: torch.Tensor, stride: int, size: int
    ) -> torch.Tensor:
        """`crop_windows` of the fine map, computed from its last stage's input half [N,d1,H/2,W/2]
        on a block around each window only -> [M, size*size, d0] (size even, stride even).

        A window's first full-res pixel a = stride * cell - (size - stride) / 2 (per axis) is
        interpolated from the B = size/2 + 2 half-res conv outputs from lo = floor(a/2) - 1 on; the
        two 3x3 convs need two more half-res pixels on each side of those. Outside the image the convs
        see zeros (their padding), the upsampling repeats the edge and the window is zero, as on the
        whole map.
        """
        conv1, norm, act, conv2 = self.layer1_outconv2
        h, w = half.shape[-2:]
        blocks = size // 2 + 2
        rc = torch.stack([cell_ids // (2 * w // stride), cell_ids % (2 * w // stride)], 1)  # [M,2] (row, col)
        start = rc * stride - (size - stride) // 2  # [M,2] first full-res pixel of each window
        lo = start // 2 - 1  # [M,2] first half-res conv output the window interpolates from
        pad = (size - stride) // 2 + 4  # keeps every block inside the padded map
        x = gather_blocks(F.pad(half, [pad] * 4), b_ids, lo - 2 + pad, blocks + 4)  # [M,d1,B+4,B+4]
        x = act(norm(F.conv2d(x, conv1.weight)))  # half-res pixels lo-1 .. lo+B
        x = F.conv2d(x * inside(lo - 1, blocks + 2, (h, w)), conv2.weight)  # [M,d0,B,B]: lo .. lo+B-1
        x = clamp_blocks(x, lo, (h, w))
        first = 2 + (size - stride) // 2 % 2  # of the window in the upsampled block (full-res 2*lo on)
        x = upsample2(x)[:, :, first : first + size, first : first + size]
        x = x * inside(start, size, (2 * h, 2 * w))
        return x.flatten(2).transpose(1, 2)


def crop_windows(
    fine: torch.Tensor, b_ids: torch.Tensor, cell_ids: torch.Tensor, stride: int, size: int
) -> torch.Tensor:
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


def gather_blocks(x: torch.Tensor, b_ids: torch.Tensor, corner: torch.Tensor, size: int) -> torch.Tensor:
    """Square blocks of x [N,C,H,W] whose top-left pixels are corner [M,2] (row, col) in images b_ids [M]
    -> [M,C,size,size] (every block inside x)."""
    offsets = torch.arange(size, device=x.device)
    rows, cols = corner[:, :1] + offsets, corner[:, 1:] + offsets  # [M,size]
    return x.permute(0, 2, 3, 1)[b_ids[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def inside(corner: torch.Tensor, size: int, hw: tuple[int, int]) -> torch.Tensor:
    """[M,1,size,size] 1 where the block of pixels from corner [M,2] (row, col) lies inside an h x w image, else 0."""
    offsets = torch.arange(size, device=corner.device)
    rows, cols = corner[:, :1] + offsets, corner[:, 1:] + offsets  # [M,size]
    row_ok, col_ok = (rows >= 0) & (rows < hw[0]), (cols >= 0) & (cols < hw[1])
    return (row_ok[:, :, None] & col_ok[:, None, :])[:, None].float()


def clamp_blocks(x: torch.Tensor, corner: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """x [M,C,B,B] blocks of an h x w map from corner [M,2] on, their pixels outside the map replaced
    by the nearest inside (what the bilinear upsampling of the whole map does at its edges)."""
    m, _, b, _ = x.shape
    offsets = torch.arange(b, device=x.device)
    rows = (corner[:, :1] + offsets).clamp(0, hw[0] - 1) - corner[:, :1]  # [M,B] indices into the block
    cols = (corner[:, 1:] + offsets).clamp(0, hw[1] - 1) - corner[:, 1:]
    index = torch.arange(m, device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
