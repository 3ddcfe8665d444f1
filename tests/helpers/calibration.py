"""Making a randomly initialised network behave like a trained one where tests and benchmarks need it."""

import numpy as np
import torch
import torch.nn.functional as F

from sfm_reweight.model.eloftr import ELoFTR


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture, float32 [h,w] in [0,1]: distinctive enough for a random network to match."""
    noise = torch.rand(1, 1, h + 8, w + 8, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(noise, 5, 1)[0, 0, 2 : h + 2, 2 : w + 2].numpy()


@torch.no_grad()
def calibrate_batchnorm(model: ELoFTR, images: torch.Tensor) -> None:
    """Give a randomly initialised network BatchNorm statistics of real activations on images [N,1,H,W].

    With the default statistics (mean 0, var 1) the random RepVGG features grow to a scale where
    one cell dominates the dual softmax and only a single match survives; calibrated, a random
    network finds hundreds of matches on a shifted texture (what parity tests and benchmarks need).
    Call it before `fuse()`, which folds the backbone's BatchNorms away.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.backbone.train()
    model.backbone(images)
    model.eval()
