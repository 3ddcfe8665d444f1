"""Pairs from COLMAP's vocabulary-tree retrieval (through pycolmap), with a tree built from the
images' own SIFT descriptors: nothing to download.

    python -m sfm_reweight.pairs_from_vocab_tree --image_dir images/ --output pairs-vocab-tree.txt \
        --num_matched 20 [--vocab_tree outputs/vocab-tree.bin]

COLMAP >= 3.12 indexes with FAISS and cannot read the old FLANN `vocab_tree_flickr100K_*.bin`
files, and without a tree path it would download one, so the tree is built here: pycolmap's SIFT
(RootSIFT) on every image, each image's descriptors and keypoints written to a temporary COLMAP
database, a `VisualIndex` built from a random sample of the descriptors (at most
"build_descriptors", memory bounded), and `VocabTreePairGenerator` ranks every image against all
(without spatial verification). Each image gets its `num_matched` best other images, best first;
COLMAP's own result for an image includes the image itself, which is dropped.

`vocab_tree`: a tree file to use when it exists (e.g. one built from a larger collection), else
where the tree built here is written for later runs. Unreadable images are reported and left out.
"""

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
from tqdm import tqdm

from . import cli
from .colmap import colmap_logging, new_database
from .extract_global import sample_rows
from .image_io import GrayImages
from .matchers.colmap_sift import ColmapSift
from .utils.atomic import atomic_path
from .utils.conf import resolve
from .utils.errors import InputError
from .utils.pairs import Pair, collect_image_names, write_pairs

logger = logging.getLogger(__name__)

# COLMAP implements its visual index for these (descriptor, embedding) dimensions only: SIFT's 128
DESCRIPTOR_DIM, EMBEDDING_DIM = 128, 64
REQUIRED_API = (
    "VisualIndex",
    "VocabTreePairGenerator",
    "VocabTreePairingOptions",
    "FeatureDescriptors",
    "FeatureDescriptorsFloat",
)

confs: dict[str, dict[str, Any]] = {
    "sift": {
        "resize_max": 1024,  # long side for SIFT (only downscaled)
        "max_num_features": 4096,  # SIFT features per image
        "num_visual_words": 4096,  # capped by the descriptors sampled to build the tree
        "build_descriptors": 500_000,  # descriptors sampled over all images to build the tree
        "num_iterations": 25,  # k-means iterations per level of the tree
        "num_checks": 64,  # nearest-word search effort when indexing and querying
        "seed": 0,  # the descriptor sample and COLMAP's k-means
    },
}


def require_api() -> None:
    """pycolmap's vocabulary-tree API (COLMAP >= 3.12 with FAISS), else an InputError naming what is missing."""
    missing = [name for name in REQUIRED_API if not hasattr(pycolmap, name)]
    if missing:
        raise InputError(
            f"pairs_from_vocab_tree: pycolmap {pycolmap.__version__} lacks {', '.join(missing)}"
            " (the FAISS vocabulary tree of COLMAP >= 3.12); install pycolmap>=4.0"
        )


def build_tree(descriptors: np.ndarray, num_visual_words: int, num_iterations: int, num_checks: int, path: Path) -> int:
    """Build a visual index from SIFT descriptors [N,128] (uint8 values, as COLMAP stores them) and
    write it to `path`, crash-safe; returns its number of visual words."""
    words = min(num_visual_words, len(descriptors))
    if words < 1:
        raise InputError("pairs_from_vocab_tree: no SIFT descriptors to build a vocabulary tree from")
    index = pycolmap.VisualIndex.create(DESCRIPTOR_DIM, EMBEDDING_DIM)
    options = pycolmap.VisualIndex.BuildOptions(
        num_visual_words=words, num_iterations=num_iterations, num_checks=num_checks
    )
    # COLMAP indexes the database's uint8 descriptors cast to float: the tree is built on the same values
    index.build(
        options,
        pycolmap.FeatureDescriptorsFloat(type=pycolmap.FeatureExtractorType.SIFT, data=descriptors.astype(np.float32)),
    )
    with atomic_path(path) as tmp:
        index.write(tmp)
    return index.num_visual_words()


def write_sift(
    db: pycolmap.Database, names: Sequence[str], images: GrayImages, conf: dict, sample: bool
) -> tuple[dict[int, str], np.ndarray]:
    """SIFT of every readable image into the database (a camera, the image, keypoints, descriptors);
    returns image id -> name and, if `sample`, a random sample of the descriptors [M,128] uint8 to
    build the tree from (conf["build_descriptors"] in all, the same share from every image)."""
    extractor = ColmapSift({"max_num_features": conf["max_num_features"]}, conf["resize_max"])
    per_image = -(-conf["build_descriptors"] // len(names))
    ids: dict[int, str] = {}
    samples = [np.zeros((0, DESCRIPTOR_DIM), np.uint8)]
    for i, name in enumerate(tqdm(names, desc="pairs_from_vocab_tree: sift", unit="image")):
        if (gray := images(name)) is None:
            continue
        sift = extractor.extract(gray)
        h, w = gray.shape
        # the pair generator reads images, keypoints and descriptors from the database; the camera only has to exist
        camera_id = db.write_camera(
            pycolmap.Camera(model="SIMPLE_PINHOLE", width=w, height=h, params=[max(w, h), w / 2, h / 2])
        )
        image_id = db.write_image(pycolmap.Image(name=name, camera_id=camera_id))
        db.write_keypoints(image_id, sift["keypoints"] + 0.5)  # COLMAP's convention: pixel corner at 0
        db.write_descriptors(
            image_id, pycolmap.FeatureDescriptors(type=pycolmap.FeatureExtractorType.SIFT, data=sift["descriptors"])
        )
        ids[image_id] = name
        if sample:
            samples.append(sample_rows(sift["descriptors"], per_image, conf["seed"], i))
    if len(ids) < 2:
        raise InputError(f"{images.image_dir}: {len(ids)} readable images, need at least 2 to pair")
    return ids, np.concatenate(samples)


def main(
    conf: str | dict,
    image_dir: Path,
    output: Path,
    num_matched: int,
    image_list: Path | Sequence[str] | None = None,
    vocab_tree: Path | None = None,
) -> list[Pair]:
    """Write `name other` pairs, each image's `num_matched` most similar other images by vocabulary-tree
    retrieval among the images of `image_list` (default: all under `image_dir`); returns the pairs."""
    conf = resolve(confs, conf)
    require_api()
    if num_matched < 1:
        raise InputError(f"pairs_from_vocab_tree: num_matched {num_matched}: expected at least 1")
    names = collect_image_names(image_list, image_dir=image_dir)
    if len(names) < 2:
        raise InputError(
            f"{image_list if image_list is not None else image_dir}: {len(names)} images, need at least 2 to pair"
        )
    start_time = time.time()
    reuse_tree = vocab_tree is not None and Path(vocab_tree).is_file()

    with tempfile.TemporaryDirectory(prefix="vocab-tree-") as tmp, colmap_logging(verbose=False):
        db = pycolmap.Database.open(new_database(Path(tmp, "database.db")))
        try:
            ids, samples = write_sift(
                db, names, GrayImages(image_dir, "pairs_from_vocab_tree"), conf, sample=not reuse_tree
            )
            tree = Path(vocab_tree) if reuse_tree else Path(vocab_tree or Path(tmp, "vocab-tree.bin"))
            if reuse_tree:
                how = f"read from {tree}"
            else:
                pycolmap.set_random_seed(conf["seed"])  # COLMAP's k-means draws from its global generator
                words = build_tree(samples, conf["num_visual_words"], conf["num_iterations"], conf["num_checks"], tree)
                how = f"of {words} words built from {len(samples)} descriptors" + (
                    f", written to {tree}" if vocab_tree else ""
                )
            # each image's own entry is among COLMAP's num_images results, hence one more
            pairing = pycolmap.VocabTreePairingOptions(
                vocab_tree_path=tree, num_images=num_matched + 1, num_checks=conf["num_checks"]
            )
            try:
                ranked = pycolmap.VocabTreePairGenerator(pairing, db).all_pairs()
            except (RuntimeError, ValueError) as err:  # pycolmap raises ValueError for an unreadable index
                raise InputError(
                    f"{tree}: not a vocabulary tree COLMAP can read for SIFT ({cli.one_line(err)})"
                ) from None
        finally:
            db.close()

    by_query: dict[str, list[str]] = {name: [] for name in ids.values()}
    for query_id, other_id in ranked:
        if other_id != query_id:
            by_query[ids[query_id]].append(ids[other_id])
    pairs = [(query, other) for query in names if query in by_query for other in by_query[query][:num_matched]]
    write_pairs(output, pairs)
    failed = sorted(set(names) - set(ids.values()))
    skipped = f"; {len(failed)} unreadable images left out ({cli.short_list(failed)})" if failed else ""
    logger.info(
        "pairs_from_vocab_tree: %d pairs for %d images (top %d) written to %s%s; vocabulary tree %s; %.1f s.",
        len(pairs),
        len(ids),
        num_matched,
        output,
        skipped,
        how,
        time.time() - start_time,
    )
    return pairs


def command(argv: list[str] | None = None) -> None:
    help = {"vocab_tree": "a tree file to use if it exists, else where to write the one built"}
    cli.command(main, __doc__, argv, confs, help=help)


if __name__ == "__main__":
    command()
