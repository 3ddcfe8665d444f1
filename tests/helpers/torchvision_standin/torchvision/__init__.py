"""TEST-ONLY stand-in for torchvision: the one function hloc's match_dense uses.

No torchvision wheel loads with the CPU torch 2.13 of this environment, and hloc's match_dense
imports `torchvision.transforms.functional` only for `resize` of tensors. The tests put this folder
on sys.path only when `import torchvision` fails; nothing else of torchvision (or hloc) is replaced.
"""

__version__ = "0.0.0+standin"
