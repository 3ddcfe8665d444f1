"""Pairs from camera poses: each registered image of a COLMAP model with the `num_matched` images
whose camera centres are nearest, among those whose viewing directions differ by less than
`rotation_threshold` degrees.

    python -m sfm_reweight.pairs_from_poses --model sfm/ --output pairs.txt --num_matched 20
"""

import logging
from pathlib import Path

import numpy as np

from . import cli
from .pairs_from_covisibility import read_registered
from .pairs_from_retrieval import CHUNK_ROWS, top_k
from .utils.pairs import Pair, check_positive, write_pairs

logger = logging.getLogger(__name__)


def main(model: Path, output: Path, num_matched: int, rotation_threshold: float = 30.0) -> list[Pair]:
    """Write each registered image's nearest cameras (nearest first) that look the same way (none
    within `rotation_threshold`: an empty file, the threshold's choice)."""
    check_positive(num_matched=num_matched)
    reconstruction = read_registered(model)
    images = [reconstruction.images[i] for i in sorted(reconstruction.reg_image_ids())]
    names = [im.name for im in images]
    centers = np.array([im.projection_center() for im in images]).reshape(-1, 3)
    directions = np.array([im.viewing_direction() for im in images]).reshape(-1, 3)
    min_cos = np.cos(np.deg2rad(rotation_threshold))
    pairs = []
    for start in range(0, len(images), CHUNK_ROWS):
        rows = np.arange(start, min(start + CHUNK_ROWS, len(images)))
        distances = np.linalg.norm(centers[rows, None] - centers[None], axis=-1)
        invalid = (directions[rows] @ directions.T < min_cos) | (rows[:, None] == np.arange(len(images))[None])
        pairs += [(names[rows[r]], names[c]) for r, c in top_k(-distances, invalid, num_matched)]
    write_pairs(output, pairs)
    logger.info(
        "pairs_from_poses: %d pairs for %d registered images of %s (top %d, within %.0f deg) written to %s.",
        len(pairs),
        len(images),
        model,
        num_matched,
        rotation_threshold,
        output,
    )
    return pairs


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv)


if __name__ == "__main__":
    command()
