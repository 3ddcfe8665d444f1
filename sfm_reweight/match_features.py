"""hloc's features path: keypoints extracted once per image and matched by descriptor, for a
matcher that works so (`sift`: matchers/colmap_sift.py), into the same features and matches files as
match_dense (plus `descriptors` [128,N] uint8 and `scales` [N] per image). match_dense hands such
confs here:

    python -m sfm_reweight.match_dense --conf sift --pairs pairs.txt --image_dir images/ --export_dir outputs/

Images already in the features file and pairs already in the matches file are skipped unless
`overwrite`, when they come from the same image files and the same conf (utils/provenance.py, as in
match_dense); each file is written to a temporary copy renamed into place at the end. A run holds
a lock on both files (utils/lock.py): a second run into either of them at once is refused.
"""

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import matchers
from .image_io import GrayImages
from .io import atomic_h5, delete_pair, list_h5_names, open_h5, output_paths, write_features, write_matches
from .matchers.colmap_sift import match_descriptors
from .utils import lock, provenance
from .utils.pairs import read_pairs_to_match

logger = logging.getLogger(__name__)


def main(
    conf: dict[str, Any],
    pairs: Path,
    image_dir: Path,
    export_dir: Path | None = None,
    matches: Path | None = None,
    features: Path | str | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Extract keypoints for the images of `pairs` with the matcher of `conf` (a resolved conf of
    match_dense, e.g. `sift`) and match the pairs by descriptor; returns (features, matches)."""
    features, matches = output_paths(conf["output"], pairs, export_dir, features, matches)
    _, unique = read_pairs_to_match(pairs, image_dir)  # fails on unknown images before any work
    with lock.exclusive(features, matches):  # another run writing either file is refused here
        names = list(dict.fromkeys(n for p in unique for n in p))
        # what the files are made from: the matcher's settings and the size it extracts at
        made_from = {"conf": {"model": conf["model"], "preprocessing": conf["preprocessing"]}}
        if not overwrite:
            provenance.check_provenance(features, made_from, provenance.REUSE_HINT)
            provenance.check_provenance(matches, made_from, provenance.REUSE_HINT)
        fingerprints = provenance.image_fingerprints(image_dir, names)
        existing: set[str] = set()
        if features.exists() and not overwrite:
            with open_h5(features) as f:
                # changed images are extracted again
                existing = set(list_h5_names(f)) - provenance.stale_images(f, fingerprints)
        start_time = time.time()

        matcher = matchers.load(conf["model"], conf["preprocessing"]["resize_max"])
        stage = f"match_features ({conf['name']})"
        images = GrayImages(image_dir, stage, conf["preprocessing"]["resize_max"])
        with atomic_h5(features, copy_existing=not overwrite) as f:
            provenance.write_provenance(f.attrs, made_from)
            for name in tqdm([n for n in names if n not in existing], desc=f"{stage}: extract", unit="image"):
                if name in f:  # of an earlier version of the file: gone even if this one is unreadable
                    del f[name]
                if (gray := images(name)) is None:
                    continue
                size = gray.shape[::-1]
                out = matcher.extract(gray)
                write_features(
                    f,
                    name,
                    out["keypoints"],
                    np.ones(len(out["keypoints"])),
                    size,
                    scales=out["scales"],
                    descriptors=out["descriptors"].T,
                )
                provenance.record_image(f, name, fingerprints[name])

        num_matches = 0
        with open_h5(features) as ffeat, atomic_h5(matches, copy_existing=not overwrite) as fmatch:
            provenance.write_provenance(fmatch.attrs, made_from)
            fresh = set() if overwrite else provenance.fresh_pairs(fmatch, unique, fingerprints)
            for pair in unique:  # earlier matches of the pair, of other image versions or in the other key order
                if pair not in fresh:
                    delete_pair(fmatch, *pair)
            todo = [p for p in unique if p[0] in ffeat and p[1] in ffeat and p not in fresh]
            for name0, name1 in tqdm(todo, desc=f"{stage}: match", unit="pair"):
                matches0, scores0 = match_descriptors(
                    ffeat[name0]["descriptors"][()].T, ffeat[name1]["descriptors"][()].T, matcher.conf["ratio"]
                )
                write_matches(fmatch, name0, name1, matches0, scores0)
                provenance.record_pair(fmatch, name0, name1, fingerprints)
                num_matches += int((matches0 > -1).sum())
        logger.info(
            "%s: %d images (%d extracted now, %d unreadable and skipped), %d pairs matched now of %d unique"
            " pairs in %s, %d matches (%.0f per pair); features in %s, matches in %s; %.1f s.",
            stage,
            len(names),
            len(names) - len(existing & set(names)) - len(images.failed),
            len(images.failed),
            len(todo),
            len(unique),
            pairs,
            num_matches,
            num_matches / max(len(todo), 1),
            features,
            matches,
            time.time() - start_time,
        )
        return features, matches
