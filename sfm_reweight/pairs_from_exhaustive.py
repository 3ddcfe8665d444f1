"""Exhaustive pairs: every unordered pair of a set of images, or every query with every reference.

python -m sfm_reweight.pairs_from_exhaustive --image_dir images/ --output pairs.txt
python -m sfm_reweight.pairs_from_exhaustive --image_list queries.txt --ref_features feats.h5 --output pairs.txt
"""

import logging
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

from . import cli
from .utils.errors import InputError
from .utils.pairs import Pair, collect_image_names, write_pairs

logger = logging.getLogger(__name__)


def main(
    output: Path,
    image_list: Path | Sequence[str] | None = None,
    features: Path | None = None,
    image_dir: Path | None = None,
    ref_list: Path | Sequence[str] | None = None,
    ref_features: Path | None = None,
) -> list[Pair]:
    """Write all pairs (i < j, in list order) of the images named by `image_list`, `features` or
    `image_dir`; with references (`ref_list` or `ref_features`), every (image, reference) pair
    except an image with itself. Inputs that allow no pair (one image) are an InputError."""
    with_refs = ref_list is not None or ref_features is not None
    names = collect_image_names(image_list, features, image_dir, minimum=1 if with_refs else 2)
    if not with_refs:
        pairs = list(combinations(names, 2))
    else:
        refs = collect_image_names(ref_list, ref_features)
        pairs = [(n, r) for n in names for r in refs if n != r]
        if not pairs:
            raise InputError(f"no pairs: the images and the references are the one image {names[0]!r}")
    write_pairs(output, pairs)
    logger.info("pairs_from_exhaustive: %d pairs of %d images written to %s.", len(pairs), len(names), output)
    return pairs


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv)


if __name__ == "__main__":
    command()
