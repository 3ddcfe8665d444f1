"""Real image pairs for in-loop validation: the Oxford affine sequences, pairs 1-2 .. 1-`last`,
resized to the training views' size so that `validation.validate` scores them like its synthetic
homography pairs. A stage that gains on synthetic pairs and loses on real photos shows in val.csv.
"""

from pathlib import Path

import cv2
import numpy as np
import torch

from ..eval.datasets import read_oxford
from ..image_io import read_image, to_gray_float
from ..preprocessing import pixel_scaling


def oxford_validation_pairs(root: str | Path, size: tuple[int, int], last: int = 4) -> list[dict]:
    """Items as `HomographyPairs` yields them (image0/1 [1,h,w] in [0,1], H_0to1 [3,3] between the
    resized views, valid0/1 [h,w] all True) for pairs (1, k), k <= `last`, of every sequence."""
    w, h = size
    items = []
    for pair in read_oxford(root):
        if int(pair.image1.stem.removeprefix("img")) > last:
            continue
        grays = [to_gray_float(read_image(p), str(p)) for p in (pair.image0, pair.image1)]
        scalings = [pixel_scaling(w / g.shape[1], h / g.shape[0]) for g in grays]
        H = scalings[1] @ pair.H_0to1 @ np.linalg.inv(scalings[0])
        views = [cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA) for g in grays]
        items.append(
            {
                "image0": torch.from_numpy(views[0])[None],
                "image1": torch.from_numpy(views[1])[None],
                "H_0to1": torch.from_numpy(H / H[2, 2]).float(),
                "valid0": torch.ones(h, w, dtype=torch.bool),
                "valid1": torch.ones(h, w, dtype=torch.bool),
            }
        )
    return items
