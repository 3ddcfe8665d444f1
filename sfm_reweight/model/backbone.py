"""RepVGG backbone of EfficientLoFTR: grayscale image -> features at 1/2, 1/4 and 1/8 resolution.

Module and parameter names follow the official code (`layer0..3`, `rbr_dense`, `rbr_1x1`,
`rbr_identity`, `rbr_reparam`) so that official checkpoints load strictly.
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    branch = nn.Sequential()
    branch.add_module("conv", nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False))
    branch.add_module("bn", nn.BatchNorm2d(c_out))
    return branch


def fold_batchnorm(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of conv(kernel) followed by `bn` in eval mode."""
    std = (bn.running_var + bn.eps).sqrt()
    return kernel * (bn.weight / std).reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std


class RepVGGBlock(nn.Module):
    """relu(bn(conv3x3(x)) + bn(conv1x1(x)) + bn(x)); the identity branch only when c_in == c_out and stride 1.

    `fuse()` folds the three branches into one biased 3x3 conv (`rbr_reparam`) for inference.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.rbr_dense = conv_bn(c_in, c_out, 3, stride, 1)
        self.rbr_1x1 = conv_bn(c_in, c_out, 1, stride, 0)
        self.rbr_identity = nn.BatchNorm2d(c_in) if c_in == c_out and stride == 1 else None
        self.rbr_reparam: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rbr_reparam is not None:
            return F.relu(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return F.relu(out)

    @torch.no_grad()
    def fuse(self) -> None:
        if self.rbr_reparam is not None:
            return
        dense = self.rbr_dense.conv
        dtype = dense.weight.dtype
        self.double()  # fold in float64: the fused conv then differs from the branches by fp32 rounding only
        kernel, bias = fold_batchnorm(dense.weight, self.rbr_dense.bn)
        kernel_1x1, bias_1x1 = fold_batchnorm(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        kernel, bias = kernel + F.pad(kernel_1x1, [1, 1, 1, 1]), bias + bias_1x1
        if self.rbr_identity is not None:
            eye = torch.zeros_like(kernel)
            channels = torch.arange(kernel.shape[0], device=kernel.device)
            eye[channels, channels, 1, 1] = 1.0
            kernel_id, bias_id = fold_batchnorm(eye, self.rbr_identity)
            kernel, bias = kernel + kernel_id, bias + bias_id
        fused = nn.Conv2d(dense.in_channels, dense.out_channels, 3, dense.stride, 1, bias=True)
        fused.to(device=kernel.device, dtype=dtype)
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity
        self.rbr_identity = None
        self.rbr_reparam = fused


def make_stage(c_in: int, c_out: int, num_blocks: int, stride: int) -> nn.ModuleList:
    return nn.ModuleList(
        RepVGGBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(num_blocks)
    )


class RepVGGBackbone(nn.Module):
    """layer0: 1 -> d0 at 1/2; layer1: d0 at 1/2; layer2: d1 at 1/4; layer3: d2 at 1/8 (d = block_dims)."""

    def __init__(self, block_dims: list[int], num_blocks: list[int]):
        super().__init__()
        d0, d1, d2 = block_dims
        self.layer0 = RepVGGBlock(1, d0, stride=2)
        self.layer1 = make_stage(d0, d0, num_blocks[0], stride=1)
        self.layer2 = make_stage(d0, d1, num_blocks[1], stride=2)
        self.layer3 = make_stage(d1, d2, num_blocks[2], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image [N,1,H,W] in [0,1] -> (x1 [N,d0,H/2,W/2], x2 [N,d1,H/4,W/4], coarse [N,d2,H/8,W/8])."""
        x = self.layer0(image)
        for block in self.layer1:
            x = block(x)
        x1 = x
        for block in self.layer2:
            x = block(x)
        x2 = x
        for block in self.layer3:
            x = block(x)
        return x1, x2, x

    def fuse(self) -> None:
        for m in self.modules():
            if isinstance(m, RepVGGBlock):
                m.fuse()
