"""Pairs from covisibility in a COLMAP model: each registered image with the `num_matched` images
that observe the most 3D points in common with it.

    python -m sfm_reweight.pairs_from_covisibility --model sfm/ --output pairs.txt --num_matched 20
"""

import logging
from pathlib import Path

import numpy as np
import pycolmap

from . import cli
from .utils.errors import InputError
from .utils.pairs import Pair, check_positive, write_pairs

logger = logging.getLogger(__name__)


def _csr(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group `values` by `keys` in [0, n): (indptr [n+1], values sorted by key)."""
    order = np.argsort(keys, kind="stable")
    return np.searchsorted(keys[order], np.arange(n + 1)), values[order]


def _gather(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The concatenated groups `rows` of a CSR layout."""
    lengths = indptr[rows + 1] - indptr[rows]
    offsets = np.repeat(indptr[rows] - (np.cumsum(lengths) - lengths), lengths)
    return values[np.arange(lengths.sum()) + offsets]


def covisible_pairs(reconstruction: pycolmap.Reconstruction, num_matched: int) -> list[Pair]:
    """For each registered image (by id), its `num_matched` images sharing the most 3D points
    (at least one), most shared first."""
    image_ids = sorted(reconstruction.reg_image_ids())
    names = [reconstruction.images[i].name for i in image_ids]
    row = {image_id: i for i, image_id in enumerate(image_ids)}
    obs_image, obs_point = [], []
    for p, point in enumerate(reconstruction.points3D.values()):
        for image_id in {el.image_id for el in point.track.elements}:
            obs_image.append(row[image_id])
            obs_point.append(p)
    obs_image, obs_point = np.array(obs_image, np.int64), np.array(obs_point, np.int64)
    points_indptr, points_of_image = _csr(obs_image, obs_point, len(image_ids))
    images_indptr, images_of_point = _csr(obs_point, obs_image, len(reconstruction.points3D))
    pairs = []
    for i in range(len(image_ids)):
        points = points_of_image[points_indptr[i] : points_indptr[i + 1]]
        counts = np.bincount(_gather(images_indptr, images_of_point, points), minlength=len(image_ids))
        counts[i] = 0
        order = np.argsort(-counts, kind="stable")[:num_matched]
        pairs += [(names[i], names[j]) for j in order if counts[j] > 0]
    return pairs


def read_registered(model: Path) -> pycolmap.Reconstruction:
    """The COLMAP model in folder `model`; InputError when it has fewer than two registered images."""
    if not Path(model).is_dir():
        raise InputError(f"{model}: COLMAP model folder not found")
    reconstruction = pycolmap.Reconstruction(model)
    if (count := reconstruction.num_reg_images()) < 2:
        raise InputError(f"{model}: {count} registered images; pairs need at least two")
    return reconstruction


def main(model: Path, output: Path, num_matched: int) -> list[Pair]:
    """Write each registered image's `num_matched` most covisible images, most shared points first."""
    check_positive(num_matched=num_matched)
    reconstruction = read_registered(model)
    pairs = covisible_pairs(reconstruction, num_matched)
    write_pairs(output, pairs)
    logger.info(
        "pairs_from_covisibility: %d pairs for %d registered images of %s (top %d) written to %s.",
        len(pairs),
        reconstruction.num_reg_images(),
        model,
        num_matched,
        output,
    )
    return pairs


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv)


if __name__ == "__main__":
    command()
