"""Global descriptors for image retrieval with nothing to download: VLAD of local descriptors, with a
codebook learned from the images being indexed, into hloc's global-descriptor file.

    python -m sfm_reweight.extract_global --image_dir images/ --export_dir outputs/ [--conf vlad_xfeat]
    python -m sfm_reweight.pairs_from_retrieval --descriptors outputs/global-feats-vlad-xfeat.h5 \
        --output outputs/pairs-vlad.txt --num_matched 20
    # queries encoded with the database's codebook, into a file of their own:
    python -m sfm_reweight.extract_global --image_dir query/ --global_path outputs/global-feats-query.h5 \
        --codebook outputs/global-feats-vlad-xfeat-codebook.h5

Local descriptors (conf "local"): `xfeat`, XFeat's dense 64-d descriptors on the 1/8 grid from the
backbone of the shipped checkpoint (its frozen XFeat weights), the cells XFeat finds most reliable;
`rootsift`, pycolmap's SIFT (COLMAP normalises its descriptors as RootSIFT).

VLAD (Jegou et al. 2010, with "All about VLAD", Arandjelovic & Zisserman 2013): each local descriptor
(L2-normalised) adds its residual to its nearest of K visual words; the K residual sums are each
L2-normalised (intra-normalisation: bursty words do not dominate), then signed square root and L2.
With "pca_dim", PCA whitening learned on the VLADs of the indexed images, then L2 again. The
descriptors file holds `<name>/global_descriptor` [D] float32, so pairs_from_retrieval reads it as
it reads hloc's NetVLAD files.

The codebook (visual words and whitening) is learned from at most "codebook_images" of the images
(evenly spread over the sorted names), from a random sample of their local descriptors totalling at
most "codebook_descriptors" (so memory stays bounded), and is written next to the descriptors as
`<descriptors stem>-codebook.h5`. The whitening needs the codebook first, so its images are read
twice. A later call encodes new images with the stored codebook: the same call with more images
(e.g. queries added to the file) or `codebook=` an existing file.

Images already in the descriptors file are skipped unless `overwrite`; every "chunk_size" images
are committed (crash-safe), so a killed run resumes. Stored results record the configuration, the
local extractor's weights, the codebook's fingerprint and each image's fingerprint: a rerun with
other settings is refused, and a replaced image is described again. A run holds a lock on the
descriptors file (utils/lock.py): a second run into it at once is refused.

With `--cluster auto|local|HOST:PORT` (utils/cluster.py) the images are described in chunks by one
actor per worker slot of a Ray cluster, reading them from the same path as this process (a shared
file system); this process learns the codebook from the samples they send and writes the file.
"""

import functools
import hashlib
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
import pycolmap
import torch
import torch.nn.functional as F

from . import cli
from .image_io import GrayImages
from .io import atomic_h5, list_h5_names, open_h5, write_global_descriptor
from .model.weights import fits, read_checkpoint, resolve_weights
from .model.xfeat import XFeatBackbone
from .preprocessing import prepare
from .matchers.colmap_sift import ColmapSift
from .utils import cluster, lock
from .utils.conf import resolve
from .utils.errors import InputError
from .utils.provenance import (
    REUSE_HINT,
    check_provenance,
    differences,
    file_hash,
    image_fingerprints,
    record_image,
    stale_images,
    write_provenance,
)
from .utils.pairs import collect_image_names

logger = logging.getLogger(__name__)

XFEAT_WEIGHTS = "xfeat-eloftr"  # the shipped checkpoint whose backbone holds XFeat's pretrained weights
BACKBONE_PREFIX = "backbone."
# how a run is organised, not what it computes: left out of the identity stored with the results
RUN_KEYS = ("name", "output", "chunk_size", "cluster")
IMAGES_PER_PCA_DIM = 4  # codebook images needed per whitened dimension (see learn_whitening)

_base: dict[str, Any] = {
    "output": "vlad-xfeat",
    "local": {
        "type": "xfeat",  # "xfeat" or "rootsift"
        # long side of the image the local descriptors come from (only downscaled); 1024 px and 2048
        # cells: the better of the settings benchmarks/retrieval.py compares (docs/retrieval_localization.md)
        "resize_max": 1024,
        "max_descriptors": 2048,  # per image: XFeat's most reliable cells, SIFT's largest-scale features
    },
    "num_clusters": 64,  # visual words K; the descriptor has K x (local dimension) entries before PCA
    "kmeans_iterations": 25,
    "codebook_images": 1000,  # at most this many images learn the codebook and the whitening
    "codebook_descriptors": 200_000,  # local descriptors sampled for k-means, over all those images
    "pca_dim": None,  # PCA-whitened dimension (at most a quarter of the codebook images); None: no PCA
    "seed": 0,
    "chunk_size": 256,  # images per committed write: what a kill can lose
    "cluster": cluster.conf_defaults,  # where the images are described: here (address None)
    # or on a Ray cluster (utils/cluster.py)
}
confs: dict[str, dict[str, Any]] = {
    "vlad_xfeat": _base,
    "vlad_rootsift": {
        **_base,
        "output": "vlad-rootsift",
        "local": {"type": "rootsift", "resize_max": 1024, "max_descriptors": 4096},
    },
}
DEFAULT_CONF = "vlad_xfeat"  # the best on the measured sets (benchmarks/retrieval.py)


class LocalFeatures(Protocol):
    """Local descriptors of an image: float32 gray [H,W] in [0,1] -> [N,D] float32, rows L2-normalised."""

    dim: int
    fingerprint: str  # what the extractor is (weights' hash, library version), for the stored identity

    def __call__(self, gray: np.ndarray) -> np.ndarray: ...


def load_xfeat_backbone(weights: str | Path = XFEAT_WEIGHTS) -> tuple[XFeatBackbone, str]:
    """The XFeat backbone of one of our `xfeat` checkpoints (default: the shipped one), fused, in eval
    mode on CPU, and the checkpoint's fingerprint (sha256 prefix); nothing else of the network is built."""
    path = resolve_weights(weights)
    state = read_checkpoint(path).get("state_dict", {})
    backbone_state = {
        k.removeprefix(BACKBONE_PREFIX): v.float() for k, v in state.items() if k.startswith(BACKBONE_PREFIX)
    }
    model = XFeatBackbone()
    if problems := fits(model, backbone_state):
        raise InputError(f"{path}: no XFeat backbone in the checkpoint: " + "; ".join(problems))
    model.load_state_dict(backbone_state)
    model.eval().fuse()
    return model, file_hash(path)


class XFeatLocal:
    """XFeat's 64-d descriptors of the `max_descriptors` cells of the 1/8 grid with the highest reliability."""

    dim = 64

    def __init__(self, resize_max: int, max_descriptors: int):
        self.resize_max, self.max_descriptors = resize_max, max_descriptors
        self.model, self.fingerprint = load_xfeat_backbone()

    @torch.inference_mode()
    def __call__(self, gray: np.ndarray) -> np.ndarray:
        prepared = prepare(gray, self.resize_max)
        _, _, descriptors, reliability = self.model(torch.from_numpy(prepared.image)[None, None])
        inside = prepared.coarse_mask()  # cells of the padding are not the image's
        cells = descriptors[0].permute(1, 2, 0)[inside]  # [M,64]
        best = torch.topk(reliability[0, 0][inside], min(self.max_descriptors, len(cells))).indices
        return F.normalize(cells[best], dim=1).numpy()


class RootSiftLocal:
    """pycolmap's SIFT descriptors (RootSIFT: COLMAP's default L1_ROOT normalisation), L2-normalised."""

    dim = 128

    def __init__(self, resize_max: int, max_descriptors: int):
        self.sift = ColmapSift({"max_num_features": max_descriptors}, resize_max)
        self.fingerprint = f"pycolmap {pycolmap.__version__}"

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        descriptors = self.sift.extract(gray)["descriptors"].astype(np.float32)
        return descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-6)


LOCAL_TYPES = {"xfeat": XFeatLocal, "rootsift": RootSiftLocal}


def build_local(conf: dict) -> LocalFeatures:
    """The local extractor of a resolved conf's "local" section, one per process and settings."""
    if conf["type"] not in LOCAL_TYPES:
        raise InputError(
            f"extract_global: local descriptor type {conf['type']!r}; expected one of {sorted(LOCAL_TYPES)}"
        )
    return _local_extractor(conf["type"], conf["resize_max"], conf["max_descriptors"])


@functools.lru_cache(maxsize=2)
def _local_extractor(kind: str, resize_max: int, max_descriptors: int) -> LocalFeatures:
    # the identity's fingerprint and every pass (codebook, whitening, descriptors) share one
    # extractor instead of loading the XFeat backbone for each
    return LOCAL_TYPES[kind](resize_max, max_descriptors)


# --- VLAD -----------------------------------------------------------------------------------------


def learn_centroids(samples: np.ndarray, num_clusters: int, iterations: int, seed: int) -> np.ndarray:
    """k-means (faiss, seeded) of local descriptors [M,D] -> visual words [K,D] float32."""
    if len(samples) < num_clusters:
        raise InputError(
            f"extract_global: {len(samples)} local descriptors cannot learn {num_clusters} visual words;"
            " index more images or lower num_clusters"
        )
    kmeans = faiss.Kmeans(samples.shape[1], num_clusters, niter=iterations, seed=seed, verbose=False)
    kmeans.train(np.ascontiguousarray(samples, np.float32))
    return kmeans.centroids.astype(np.float32)


def vlad(descriptors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """VLAD of local descriptors [N,D] on visual words [K,D] -> [K*D] float32: residual sums per
    nearest word, each word's sum L2-normalised, signed square root, L2-normalised (zeros if N == 0)."""
    k, d = centroids.shape
    if len(descriptors) == 0:
        return np.zeros(k * d, np.float32)
    # nearest word by squared distance, without the descriptors' own norm (the same for every word)
    nearest = np.argmin((centroids**2).sum(1) - 2 * descriptors @ centroids.T, axis=1)
    sums = np.zeros((k, d), np.float64)
    np.add.at(sums, nearest, descriptors)
    sums -= np.bincount(nearest, minlength=k)[:, None] * centroids
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    v = (np.sign(sums) * np.sqrt(np.abs(sums))).ravel()
    return (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32)


def learn_whitening(vlads: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening of VLADs [n,Dv] -> (mean [Dv], projection [Dv,dim]): the principal directions,
    each divided by its standard deviation; needs n >= IMAGES_PER_PCA_DIM * dim."""
    if len(vlads) < IMAGES_PER_PCA_DIM * dim or dim > vlads.shape[1]:
        # whitened to nearly n - 1 dimensions, the n training descriptors become equidistant: retrieval
        # among them is noise (four-scene pool, 53 images at dim 48: recall@1 0.43 instead of 1.0)
        raise InputError(
            f"extract_global: pca_dim {dim} needs at least {IMAGES_PER_PCA_DIM * dim} codebook images,"
            f" got {len(vlads)};"
            " lower pca_dim or set it None"
        )
    mean = vlads.mean(0)
    _, singular, directions = np.linalg.svd(vlads - mean, full_matrices=False)
    std = singular[:dim] / math.sqrt(len(vlads) - 1)
    return mean.astype(np.float32), (directions[:dim].T / np.maximum(std, 1e-12)).astype(np.float32)


@dataclass
class Codebook:
    """Visual words and the optional whitening, with the identity (conf and extractor) that learned them."""

    centroids: np.ndarray  # [K,D] float32
    identity: dict
    pca_mean: np.ndarray | None = None  # [K*D] float32
    pca_projection: np.ndarray | None = None  # [K*D,d] float32

    @property
    def dim(self) -> int:
        """The global descriptor's dimension."""
        return self.centroids.size if self.pca_projection is None else self.pca_projection.shape[1]

    @property
    def fingerprint(self) -> str:
        """sha256 prefix of the arrays: which codebook encoded a descriptors file."""
        digest = hashlib.sha256()
        for array in (self.centroids, self.pca_mean, self.pca_projection):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def encode(self, descriptors: np.ndarray) -> np.ndarray:
        """Local descriptors [N,D] -> global descriptor [dim] float32, L2-normalised."""
        v = vlad(descriptors, self.centroids)
        if self.pca_projection is None:
            return v
        w = (v - self.pca_mean) @ self.pca_projection
        return (w / max(np.linalg.norm(w), 1e-12)).astype(np.float32)

    def write(self, path: Path) -> None:
        """Into an HDF5 file of its own (root datasets; not an hloc descriptors file), crash-safe."""
        with atomic_h5(path, copy_existing=False) as f:
            f.attrs["conf"] = json.dumps(self.identity, sort_keys=True)
            f.attrs["fingerprint"] = self.fingerprint
            f.create_dataset("centroids", data=self.centroids)
            if self.pca_projection is not None:
                f.create_dataset("pca_mean", data=self.pca_mean)
                f.create_dataset("pca_projection", data=self.pca_projection)

    @classmethod
    def read(cls, path: Path) -> "Codebook":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: codebook file not found")
        with open_h5(path) as f:
            if "centroids" not in f or "conf" not in f.attrs:
                raise InputError(f"{path}: not an extract_global codebook (no centroids or conf)")
            pca = [f[k][()] if k in f else None for k in ("pca_mean", "pca_projection")]
            return cls(f["centroids"][()], json.loads(f.attrs["conf"]), *pca)


# --- the stage ------------------------------------------------------------------------------------


def codebook_path(global_path: Path) -> Path:
    """Where a descriptors file's own codebook lives: `<stem>-codebook.h5` beside it."""
    return Path(global_path).with_name(f"{Path(global_path).stem}-codebook.h5")


def identity(conf: dict, local: LocalFeatures) -> dict:
    """What determines the descriptors: the conf without RUN_KEYS, and the local extractor's fingerprint
    (JSON round-tripped, so that it compares equal to a stored one)."""
    settings = {k: v for k, v in conf.items() if k not in RUN_KEYS}
    return json.loads(json.dumps({**settings, "local_fingerprint": local.fingerprint}))


def spread(names: Sequence[str], count: int) -> list[str]:
    """At most `count` names, evenly spread over `names` (all of them if there are fewer)."""
    if len(names) <= count:
        return list(names)
    return [names[i] for i in np.linspace(0, len(names) - 1, count).round().astype(int)]


def sample_rows(rows: np.ndarray, count: int, seed: int, index: int) -> np.ndarray:
    """At most `count` random rows of `rows` [N,...]; the draw depends only on (seed, index), the
    image's position, so that one image's sample does not depend on the others."""
    rng = np.random.default_rng([seed, index])
    return rows[rng.choice(len(rows), min(count, len(rows)), replace=False)]


class DescribeImages:
    """extract_global's work on chunks of (index, name), here or on a cluster worker: of each readable
    image, its VLAD under `codebook` or, without one, a random sample of at most `sample` of its local
    descriptors (k-means input; the draw depends only on (`seed`, index)). The extractor built here must
    be the driver's (`fingerprint`); images are read from the driver's `image_dir` (shared), but those
    an earlier pass found `unreadable` (name -> reason), which are skipped without a second warning."""

    def __init__(
        self,
        local_conf: dict,
        image_dir: Path,
        fingerprint: str,
        codebook: "Codebook | None",
        sample: int,
        seed: int,
        unreadable: dict[str, str],
    ):
        self.images = GrayImages(cluster.shared_folder(image_dir), "extract_global")
        self.images.failed.update(unreadable)
        self.local = build_local(local_conf)
        if self.local.fingerprint != fingerprint:
            host = socket.gethostname()
            raise InputError(
                f"extract_global on {host}: local descriptors {self.local.fingerprint}, the driver's {fingerprint}"
            )
        self.codebook, self.sample, self.seed = codebook, sample, seed

    def __call__(self, chunk: Sequence[tuple[int, str]], progress: Callable[[int], None]) -> tuple[dict, dict]:
        """-> ({name: VLAD [D] or sampled descriptors [N,d]}, {unreadable image: reason}); `progress(1)` per image."""
        out = {}
        for index, name in chunk:
            if (gray := self.images(name)) is not None:
                descriptors = self.local(gray)
                if self.codebook is not None:
                    out[name] = self.codebook.encode(descriptors)
                else:
                    out[name] = sample_rows(descriptors, self.sample, self.seed, index)
            progress(1)
        return out, dict(self.images.failed)


def describe(
    conf: dict,
    image_dir: Path,
    names: Sequence[str],
    fingerprint: str,
    desc: str,
    failed: dict[str, str],
    on_chunk: Callable[[list[str], dict[str, np.ndarray]], None],
    codebook: "Codebook | None" = None,
    sample: int = 0,
) -> None:
    """`DescribeImages` over `names` in chunks of conf["chunk_size"], here or on conf["cluster"]:
    `on_chunk(the chunk's names, its results)` as each finishes; unreadable images are added to
    `failed` (and those already in it are not read again)."""
    items = list(enumerate(names))
    chunks = [items[s : s + conf["chunk_size"]] for s in range(0, len(items), conf["chunk_size"])]
    work = functools.partial(
        DescribeImages,
        conf["local"],
        Path(image_dir).resolve(),
        fingerprint,
        codebook,
        sample,
        conf["seed"],
        dict(failed),
    )

    def finished(i: int, result: tuple[dict, dict]) -> None:
        failed.update(result[1])
        on_chunk([name for _, name in chunks[i]], result[0])

    cluster.map_chunks(work, chunks, conf["cluster"], finished, desc, "image", [len(c) for c in chunks])


def learn(image_dir: Path, names: Sequence[str], conf: dict, ident: dict, failed: dict[str, str]) -> Codebook:
    """The codebook of `names` (at most conf["codebook_images"] of them): k-means over a per-image
    random sample of their local descriptors, then the whitening of their VLADs if conf["pca_dim"]; the
    same whatever order the chunks finish in. Unreadable images are added to `failed`."""
    train = spread(names, conf["codebook_images"])
    fingerprint = ident["local_fingerprint"]
    per_image = math.ceil(conf["codebook_descriptors"] / len(train))
    samples: dict[str, np.ndarray] = {}
    describe(
        conf,
        image_dir,
        train,
        fingerprint,
        "extract_global: codebook",
        failed,
        lambda _, out: samples.update(out),
        sample=per_image,
    )
    if not samples:
        raise InputError(f"{image_dir}: none of the {len(train)} codebook images could be read")
    rows = np.concatenate([samples[n] for n in train if n in samples])
    codebook = Codebook(learn_centroids(rows, conf["num_clusters"], conf["kmeans_iterations"], conf["seed"]), ident)
    if conf["pca_dim"] is not None:
        vlads: dict[str, np.ndarray] = {}
        describe(
            conf,
            image_dir,
            train,
            fingerprint,
            "extract_global: whitening",
            failed,
            lambda _, out: vlads.update(out),
            codebook,
        )
        codebook.pca_mean, codebook.pca_projection = learn_whitening(
            np.stack([vlads[n] for n in train if n in vlads]), conf["pca_dim"]
        )
    return codebook


def main(
    conf: str | dict,
    image_dir: Path,
    export_dir: Path | None = None,
    image_list: Path | Sequence[str] | None = None,
    global_path: Path | None = None,
    codebook: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the VLAD global descriptor of every image (of `image_list`, else all under `image_dir`)
    to `global_path` (default `global-feats-<conf output>.h5` in `export_dir`); returns that path.

    conf: a name in `confs` or a dict overlaid on one. The codebook is `codebook` when given, else the
    descriptors file's own (`<stem>-codebook.h5`), learned from these images when it does not exist
    (or with `overwrite`). Images already in the file are skipped unless `overwrite`, which rebuilds
    the file from this run alone.
    """
    conf = resolve(confs, conf)
    if global_path is None:
        if export_dir is None:
            raise InputError("extract_global: give an export folder or the descriptors path")
        global_path = Path(export_dir, f"global-feats-{conf['output']}.h5")
    global_path = Path(global_path)
    names = collect_image_names(image_list, image_dir=image_dir)
    with lock.exclusive(global_path):  # another run writing the file (and its codebook) is refused here
        start_time = time.time()
        ident = identity(conf, build_local(conf["local"]))

        fingerprints = image_fingerprints(image_dir, names)
        done: set[str] = set()
        stored_codebook = None  # fingerprint of the codebook that encoded the file's descriptors
        if global_path.exists() and not overwrite:
            check_provenance(global_path, {"conf": ident}, REUSE_HINT)
            with open_h5(global_path) as f:
                stored_codebook = json.loads(f.attrs["codebook"]) if "codebook" in f.attrs else None
                stale = stale_images(f, fingerprints)  # replaced since: described again
            done = set(list_h5_names(global_path)) - stale

        own = codebook_path(global_path)
        learned = codebook is None and (overwrite or not own.exists())
        failed: dict[str, str] = {}
        if not learned:
            book = Codebook.read(codebook or own)
            if diff := differences(book.identity, ident):
                raise InputError(
                    f"{codebook or own}: learned with other settings ({diff});"
                    " use the configuration it was learned with"
                )
        elif stored_codebook is not None:
            raise InputError(f"{global_path}: its codebook {own} is missing; {REUSE_HINT}")
        else:
            book = learn(image_dir, names, conf, ident, failed)
            book.write(own)
        if stored_codebook is not None and stored_codebook != book.fingerprint:
            raise InputError(f"{global_path}: encoded with another codebook than {codebook or own}; {REUSE_HINT}")

        todo = [n for n in names if n not in done]
        encode_start, encoded, fresh = time.time(), 0, overwrite

        def write(chunk: list[str], descriptors: dict[str, np.ndarray]) -> None:
            nonlocal encoded, fresh
            # overwrite: the first chunk written (whichever finishes first) starts the file afresh
            with atomic_h5(global_path, copy_existing=not fresh) as f:
                write_provenance(f.attrs, {"conf": ident, "codebook": book.fingerprint})
                for name in set(chunk) - set(descriptors):
                    if name in f:  # replaced by a file that cannot be read: its old descriptor goes
                        del f[name]
                for name, descriptor in descriptors.items():
                    write_global_descriptor(f, name, descriptor)
                    record_image(f, name, fingerprints[name])
            encoded, fresh = encoded + len(descriptors), False

        describe(conf, image_dir, todo, ident["local_fingerprint"], "extract_global: describe", failed, write, book)

        skipped = f"; {len(failed)} unreadable and skipped ({cli.short_list(list(failed))})" if failed else ""
        source = (
            f"learned now from {min(len(names), conf['codebook_images'])} images into {own.name}"
            if learned
            else f"from {codebook or own}"
        )
        logger.info(
            "extract_global: %d images, %d described now (%d already in %s)%s; descriptor dim %d"
            " (VLAD of %d %s words%s), codebook %s; %.2f s per image; %.1f s in all.",
            len(names),
            encoded,
            len(names) - len(todo),
            global_path.name,
            skipped,
            book.dim,
            len(book.centroids),
            conf["local"]["type"],
            "" if book.pca_projection is None else ", PCA-whitened",
            source,
            (time.time() - encode_start) / max(encoded, 1),
            time.time() - start_time,
        )
        return global_path


def command(argv: list[str] | None = None) -> None:
    help = {
        "image_list": "names to describe (default: every image under image_dir)",
        "codebook": "encode with this codebook instead of the file's own",
    }
    cli.command(main, __doc__, argv, confs, DEFAULT_CONF, cluster="describe", help=help)


if __name__ == "__main__":
    command()
