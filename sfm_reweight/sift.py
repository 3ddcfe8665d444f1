"""The classical path, for comparison: SIFT keypoints (COLMAP's, RootSIFT-normalised) matched by
mutual nearest neighbour with Lowe's ratio test, into the same features and matches files as
match_dense (plus `descriptors` [128,N] uint8 and `scales` [N] per image).

    python -m sfm_reweight.sift --pairs pairs.txt --image_dir images/ --export_dir outputs/

Images already in the features file and pairs already in the matches file are skipped unless
`overwrite`, when they come from the same image files and the same conf (utils/provenance.py, as in
match_dense); each file is written to a temporary copy renamed into place at the end.
"""

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycolmap
from tqdm import tqdm

from . import cli
from .image_io import GrayImages
from .io import atomic_h5, delete_pair, list_h5_names, open_h5, output_paths, write_features, write_matches
from .preprocessing import resized_size, to_original
from .utils.pairs import read_pairs_to_match
from .utils.provenance import (
    REUSE_HINT,
    check_provenance,
    fresh_pairs,
    image_fingerprints,
    record_image,
    record_pair,
    stale_images,
    write_provenance,
)

logger = logging.getLogger(__name__)

confs: dict[str, dict[str, Any]] = {
    "sift": {
        "output": "sift",
        "resize_max": 1600,  # long side for extraction (only downscaled); keypoints in original pixels
        "max_num_features": 8192,
        "ratio": 0.8,  # Lowe's ratio test on descriptor distances
    },
}

CHUNK_ROWS = 2048  # descriptor-similarity rows computed at once
# this matcher's name in summaries and figures: pycolmap's SIFT, not the benchmarks' OpenCV SIFT
# (eval/matchers.py, labelled "SIFT (OpenCV)")
LABEL = "SIFT (pycolmap)"


def extract(extractor: pycolmap.FeatureExtractor, gray: np.ndarray, resize_max: int | None) -> dict[str, np.ndarray]:
    """SIFT of a float32 [H,W] image in [0,1]: keypoints [N,2] float32 (original pixels, pixel
    centres), scales [N] (original pixels) and descriptors [N,128] uint8."""
    h, w = gray.shape
    new_w, new_h = resized_size(w, h, resize_max, False) if resize_max and max(w, h) > resize_max else (w, h)
    if (new_w, new_h) != (w, h):
        gray = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA)
    keypoints, descriptors = extractor.extract_from_float32_array(np.ascontiguousarray(gray, np.float32))
    kp = pycolmap.keypoints_to_matrix(keypoints).reshape(-1, 4)
    scale = np.array([w / new_w, h / new_h])
    return {
        # COLMAP puts pixel corners at integers: - 0.5 gives pixel centres in the resized image
        "keypoints": to_original(kp[:, :2].astype(np.float64) - 0.5, scale),
        "scales": (kp[:, 2] * scale.mean()).astype(np.float32),
        "descriptors": np.asarray(descriptors.data, np.uint8).reshape(-1, 128),
    }


def _unit(descriptors: np.ndarray) -> np.ndarray:
    d = descriptors.astype(np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)


def match_descriptors(desc0: np.ndarray, desc1: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours passing the ratio test: matches0 [N0] int32 (-1: none) and
    matching_scores0 [N0] float32 (cosine similarity)."""
    d0, d1 = (_unit(d) for d in (desc0, desc1))
    matches0 = np.full(len(d0), -1, np.int32)
    scores0 = np.zeros(len(d0), np.float32)
    if len(d0) == 0 or len(d1) < 2:
        return matches0, scores0
    nn = np.zeros(len(d0), np.int64)
    best, second = np.zeros(len(d0), np.float32), np.zeros(len(d0), np.float32)
    col_best, col_arg = np.full(len(d1), -np.inf, np.float32), np.zeros(len(d1), np.int64)
    for start in range(0, len(d0), CHUNK_ROWS):
        sim = d0[start : start + CHUNK_ROWS] @ d1.T
        rows = np.arange(len(sim))
        top2 = np.argpartition(-sim, 1, axis=1)[:, :2]
        first = np.where(sim[rows, top2[:, 0]] >= sim[rows, top2[:, 1]], top2[:, 0], top2[:, 1])
        nn[start : start + len(sim)] = first
        best[start : start + len(sim)] = sim[rows, first]
        second[start : start + len(sim)] = sim[rows, top2.sum(1) - first]
        col = sim.argmax(0)
        better = sim[col, np.arange(len(d1))] > col_best
        col_best[better], col_arg[better] = sim[col, np.arange(len(d1))][better], col[better] + start
    distance = np.sqrt(np.maximum(2 - 2 * np.stack([best, second]), 0))  # between unit vectors
    keep = (col_arg[nn] == np.arange(len(d0))) & (distance[0] < ratio * distance[1])
    matches0[keep], scores0[keep] = nn[keep], best[keep]
    return matches0, scores0


def main(
    conf: str | dict,
    pairs: Path,
    image_dir: Path,
    export_dir: Path | None = None,
    matches: Path | None = None,
    features: Path | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Extract SIFT for the images of `pairs` and match the pairs; returns (features, matches)."""
    conf = cli.resolve_conf(confs, conf)
    features, matches = output_paths(conf["output"], pairs, export_dir, features, matches)
    _, unique = read_pairs_to_match(pairs, image_dir)  # fails on unknown images before any work
    names = list(dict.fromkeys(n for p in unique for n in p))
    provenance = {"conf": {k: v for k, v in conf.items() if k not in ("name", "output")}}
    if not overwrite:
        check_provenance(features, provenance, REUSE_HINT)
        check_provenance(matches, provenance, REUSE_HINT)
    fingerprints = image_fingerprints(image_dir, names)
    existing: set[str] = set()
    if features.exists() and not overwrite:
        with open_h5(features) as f:
            existing = set(list_h5_names(f)) - stale_images(f, fingerprints)  # changed images are extracted again
    start_time = time.time()

    options = pycolmap.FeatureExtractionOptions()
    options.sift.max_num_features = conf["max_num_features"]
    extractor = pycolmap.FeatureExtractor.create(options, device=pycolmap.Device.cpu)
    images = GrayImages(image_dir, "sift", conf["resize_max"])
    with atomic_h5(features, copy_existing=not overwrite) as f:
        write_provenance(f.attrs, provenance)
        for name in tqdm([n for n in names if n not in existing], desc="sift: extract", unit="image"):
            if name in f:  # of an earlier version of the file: gone even if this one is unreadable
                del f[name]
            if (gray := images(name)) is None:
                continue
            size = gray.shape[::-1]
            out = extract(extractor, gray, conf["resize_max"])
            write_features(f, name, out["keypoints"], np.ones(len(out["keypoints"])), size,
                           scales=out["scales"], descriptors=out["descriptors"].T)
            record_image(f, name, fingerprints[name])

    num_matches = 0
    with open_h5(features) as ffeat, atomic_h5(matches, copy_existing=not overwrite) as fmatch:
        write_provenance(fmatch.attrs, provenance)
        fresh = set() if overwrite else fresh_pairs(fmatch, unique, fingerprints)
        for pair in unique:  # earlier matches of the pair, of other image versions or in the other key order
            if pair not in fresh:
                delete_pair(fmatch, *pair)
        todo = [p for p in unique if p[0] in ffeat and p[1] in ffeat and p not in fresh]
        for name0, name1 in tqdm(todo, desc="sift: match", unit="pair"):
            matches0, scores0 = match_descriptors(
                ffeat[name0]["descriptors"][()].T, ffeat[name1]["descriptors"][()].T, conf["ratio"]
            )
            write_matches(fmatch, name0, name1, matches0, scores0)
            record_pair(fmatch, name0, name1, fingerprints)
            num_matches += int((matches0 > -1).sum())
    logger.info(
        "sift: %d images (%d extracted now, %d unreadable and skipped), %d pairs matched now of %d unique"
        " pairs in %s, %d matches (%.0f per pair); features in %s, matches in %s; %.1f s.",
        len(names), len(names) - len(existing & set(names)) - len(images.failed), len(images.failed), len(todo), len(unique),
        pairs, num_matches, num_matches / max(len(todo), 1), features, matches, time.time() - start_time,
    )
    return features, matches


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--image_dir", type=Path, required=True)
    parser.add_argument("--export_dir", type=Path)
    parser.add_argument("--features", type=Path)
    parser.add_argument("--matches", type=Path)
    parser.add_argument("--conf", default="sift", choices=list(confs))
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    cli.run(main, args.conf, args.pairs, args.image_dir, args.export_dir, args.matches, args.features, args.overwrite)
