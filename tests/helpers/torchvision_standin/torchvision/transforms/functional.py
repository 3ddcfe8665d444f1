"""Stand-in for `torchvision.transforms.functional.resize` on tensors (test-only, see the package docstring).

torchvision resizes a tensor with `torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
antialias=True)` by default; this does the same, for images [C,H,W] or batches [...,C,H,W].
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def output_size(height: int, width: int, size: int | Sequence[int]) -> tuple[int, int]:
    """(h, w) after resizing: `size` (h, w), or one number for the shorter side (aspect ratio kept)."""
    if isinstance(size, int) or len(size) == 1:
        short = size if isinstance(size, int) else int(size[0])
        if width <= height:
            return int(short * height / width), short
        return short, int(short * width / height)
    if len(size) != 2:
        raise ValueError(f"resize: size must be an int or a sequence of 1 or 2 ints, got {size!r}")
    return int(size[0]), int(size[1])


def resize(
    img: torch.Tensor,
    size: int | Sequence[int],
    interpolation: str = "bilinear",
    max_size: int | None = None,
    antialias: bool | None = True,
) -> torch.Tensor:
    """img [...,C,H,W] -> [...,C,h,w] with (h, w) from `size` (`output_size`); bilinear only."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"the torchvision stand-in resizes tensors only, got {type(img).__name__}")
    if str(getattr(interpolation, "value", interpolation)) != "bilinear":
        raise NotImplementedError(f"the torchvision stand-in resizes bilinearly only, got {interpolation!r}")
    if max_size is not None:
        raise NotImplementedError("the torchvision stand-in does not take max_size")
    h, w = output_size(img.shape[-2], img.shape[-1], size)
    if (h, w) == tuple(img.shape[-2:]):
        return img
    shape, dtype = img.shape, img.dtype
    x = img.reshape(-1, *shape[-3:]).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=bool(antialias))
    if not dtype.is_floating_point:
        x = x.round().clamp(torch.iinfo(dtype).min, torch.iinfo(dtype).max)
    return x.to(dtype).reshape(*shape[:-2], h, w)
