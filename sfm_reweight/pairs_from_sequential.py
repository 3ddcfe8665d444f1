"""Sequential pairs for videos and image sequences: each image with the next `window_size` images,
plus optional loop closures found by retrieval among images further apart in the sequence.

The sequence order is the image list's order, else the names sorted.

    python -m sfm_reweight.pairs_from_sequential --image_dir frames/ --output pairs.txt --window_size 5 \
        --loop_descriptors global.h5 --num_loop_closures 5
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import cli
from .io import read_global_descriptors
from .pairs_from_retrieval import CHUNK_ROWS, top_k
from .utils.pairs import Pair, check_positive, collect_image_names, unique_pairs, write_pairs

logger = logging.getLogger(__name__)


def main(
    output: Path,
    image_list: Path | Sequence[str] | None = None,
    features: Path | None = None,
    image_dir: Path | None = None,
    window_size: int = 5,
    loop_descriptors: Path | None = None,
    num_loop_closures: int = 5,
    loop_min_gap: int | None = None,
    loop_min_score: float | None = None,
) -> list[Pair]:
    """Write (i, i+1), ..., (i, i+window_size) for every image i of the sequence; with
    `loop_descriptors` (a global-descriptors file) also each image's `num_loop_closures` most
    similar images at least `loop_min_gap` positions away (default: beyond the window)."""
    check_positive(window_size=window_size)
    if loop_descriptors is not None:
        check_positive(num_loop_closures=num_loop_closures)
    names = collect_image_names(image_list, features, image_dir, minimum=2)
    if image_list is None:
        names = sorted(names)
    pairs = [
        (names[i], names[j]) for i in range(len(names)) for j in range(i + 1, min(i + window_size + 1, len(names)))
    ]
    num_window = len(pairs)

    if loop_descriptors is not None:
        gap = window_size + 1 if loop_min_gap is None else loop_min_gap
        desc = read_global_descriptors(loop_descriptors, names)
        index = np.arange(len(names))
        for start in range(0, len(names), CHUNK_ROWS):
            rows = index[start : start + CHUNK_ROWS]
            invalid = np.abs(rows[:, None] - index[None]) < gap
            found = top_k(desc[rows] @ desc.T, invalid, num_loop_closures, loop_min_score)
            pairs += [(names[min(start + r, c)], names[max(start + r, c)]) for r, c in found]
    pairs = unique_pairs(pairs)
    write_pairs(output, pairs)
    logger.info(
        "pairs_from_sequential: %d pairs of %d images (%d within a window of %d, %d loop closures) written to %s.",
        len(pairs),
        len(names),
        num_window,
        window_size,
        len(pairs) - num_window,
        output,
    )
    return pairs


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv)


if __name__ == "__main__":
    command()
