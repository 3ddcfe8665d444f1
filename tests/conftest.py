import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def shared_data() -> Path | None:
    """The shared real-data folder: $SFM_REWEIGHT_DATA, else ../shared/data next to the repository."""
    root = Path(os.environ.get("SFM_REWEIGHT_DATA", REPO.parent / "shared" / "data"))
    return root if root.is_dir() else None


@pytest.fixture
def data_root() -> Path:
    root = shared_data()
    if root is None:
        pytest.skip("shared data folder not found (set SFM_REWEIGHT_DATA)")
    return root


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture, float32 [h,w] in [0,1]: distinctive enough for a random network to match."""
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.random((1, 1, h + 8, w + 8), dtype=np.float32))
    return torch.nn.functional.avg_pool2d(noise, 5, 1)[0, 0, 2 : h + 2, 2 : w + 2].numpy()


@torch.no_grad()
def calibrate_batchnorm(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Give a randomly initialised network BatchNorm statistics of real activations.

    With the default statistics (mean 0, var 1) the random RepVGG features grow to a scale where
    one cell dominates the dual softmax and only a single match survives; calibrated, a random
    network finds hundreds of matches on a shifted texture, which is what the parity tests need.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.backbone.train()
    model.backbone(images)
    model.eval()
