"""Stand-in for `torchvision.transforms`: only `functional.resize` of tensors (see the package docstring)."""

from . import functional

__all__ = ["functional"]
