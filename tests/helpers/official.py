"""The official EfficientLoFTR implementation (PyPI `efficientloftr-inference`, an optional test and
benchmark dependency) as a numerical reference for our network."""

import importlib
import sys
import types

import torch


def import_official():
    """Import the official package; its `kornia.utils.grid` import is shimmed for kornia >= 0.9."""
    try:
        importlib.import_module("kornia.utils.grid")
    except ImportError:
        import kornia.utils

        shim = types.ModuleType("kornia.utils.grid")
        shim.create_meshgrid = kornia.utils.create_meshgrid
        sys.modules["kornia.utils.grid"] = shim
    try:
        return importlib.import_module("efficientloftr_inference")
    except ImportError as err:
        raise ImportError(
            "the official EfficientLoFTR reference needs `pip install efficientloftr-inference==0.1.1 einops`"
        ) from err


def official_model(conf: dict) -> torch.nn.Module:
    """The official network matching our resolved model `conf` (full widths; attention kernel and
    coarse settings copied), in eval mode with random weights."""
    official = import_official()
    cfg = official.full_config(coarse_threshold=conf["match_coarse"]["thr"])
    cfg["coarse"]["no_flash"] = conf["coarse"]["attention"] == "einsum"
    cfg["coarse"]["npe"] = list(conf["coarse"]["npe"])
    cfg["match_coarse"]["border_rm"] = conf["match_coarse"]["border_rm"]
    cfg["match_coarse"]["dsmax_temperature"] = conf["match_coarse"]["temperature"]
    return official.LoFTR(config=cfg).eval()


def official_forward(model: torch.nn.Module, image0, image1, mask0=None, mask1=None) -> dict:
    """Run the official model on [N,1,H,W] images (coarse masks optional); returns its data dict."""
    data = {"image0": image0, "image1": image1}
    if mask0 is not None:
        data.update(mask0=mask0, mask1=mask1)
    model(data)
    return data
