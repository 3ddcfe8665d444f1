"""The moving average of the weights that training keeps beside the network: what the loop validates
and what `trainer --export` writes."""

import torch

from ..model.eloftr import ELoFTR


def exponential_average(model: ELoFTR, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """Moving average of the weights (and BatchNorm statistics): smoother than the last step's
    weights while the learning rate is still high, so it is what gets validated and exported. The
    decay after n updates is min(decay, (1 + n) / (10 + n)), so that the average forgets the random
    initialisation within the first hundreds of steps instead of thousands."""

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        return averaged + (current - averaged) * (1 - min(decay, (1 + n) / (10 + n)))

    return torch.optim.swa_utils.AveragedModel(model, avg_fn=average, use_buffers=True)


def averaged_model(state: dict, model_conf: str | dict | None = None) -> ELoFTR:
    """The moving-average network of a training state (`last.pt`), built on `model_conf` (default:
    the state's own; e.g. the same at another coarse threshold)."""
    ema = exponential_average(ELoFTR(model_conf or state["conf"]["model"]), state["conf"]["ema_decay"])
    ema.load_state_dict(state["ema"])
    return ema.module
