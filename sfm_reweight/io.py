"""hloc's file formats: features, matches and global-descriptor HDF5 files, and their names.

Names: an image is named by its path relative to the image root, with `/`; that name keys every
file (a `/` in it makes nested HDF5 groups). A pair is keyed `n0/n1` with `/` inside the names
turned into `-` (hloc's `names_to_pair`; the legacy key joins them with `_`).

Features file: a group per image with `keypoints` [N,2] float32 (x, y in original-image pixels,
pixel-centre convention: the centre of the top-left pixel is (0, 0)), `scores` [N] and
`image_size` [2] (w, h). Matches file: a group per pair with `matches0` [N0] int32 (index into
image 1's keypoints, -1 for none) and `matching_scores0` [N0]. Global descriptors: a group per
image with `global_descriptor` [D]. Readers also accept float16 keypoints, int16 `matches0`,
`matches0` shorter than N0 and every legacy pair key.

Writes are crash-safe: `atomic_h5` works on a temporary file renamed over the target only on
success (utils/atomic.py), so an interrupted run leaves the previous file (or none), never a
truncated one. Pairs and image lists (text) are in utils/pairs.py.
"""

import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .utils.atomic import atomic_path, leftovers
from .utils.errors import InputError, MissingEntryError

# --- names -------------------------------------------------------------------------------------


def names_to_pair(name0: str, name1: str, separator: str = "/") -> str:
    """hloc's pair key: `n0/n1` with `/` inside the names turned into `-`."""
    return separator.join((name0.replace("/", "-"), name1.replace("/", "-")))


def names_to_pair_old(name0: str, name1: str) -> str:
    """The legacy pair key, joined with `_`."""
    return names_to_pair(name0, name1, separator="_")


def output_paths(
    output: str, pairs: Path, export_dir: Path | None, features: Path | str | None, matches: Path | None
) -> tuple[Path, Path]:
    """hloc's naming of a matching stage's files: `<features><output>.h5` (`features` a name prefix,
    by default "feats_", as hloc takes it) and `<output>_<pairs stem>.h5` in `export_dir`, unless
    given as paths (`Path`)."""
    prefix = features if isinstance(features, str) else "feats_"
    named = features is None or isinstance(features, str)
    if (named or matches is None) and export_dir is None:
        raise InputError("give an export folder, or both the features and the matches paths")
    features = Path(export_dir, f"{prefix}{output}.h5") if named else Path(features)
    matches = Path(matches) if matches is not None else Path(export_dir, f"{output}_{Path(pairs).stem}.h5")
    return features, matches


# --- crash-safe writes ----------------------------------------------------------------------------


@contextmanager
def atomic_h5(path: Path, copy_existing: bool = True) -> Iterator[h5py.File]:
    """An HDF5 file to write into: a temporary copy of `path` (empty if `path` does not exist or
    `copy_existing` is False), renamed over `path` only when the block completes. An exception or a
    kill inside the block leaves `path` untouched (a killed run's temporary file is removed next time)."""
    path = Path(path)
    for stale in leftovers(path):
        stale.unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        if copy_existing and path.exists():
            shutil.copyfile(path, tmp)
        with open_h5(tmp, "a") as f:
            yield f


# --- HDF5 readers and writers ---------------------------------------------------------------------


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    """`h5py.File(path, mode)`; a file HDF5 cannot open (truncated, not HDF5) is an InputError that
    names it and how to recover, instead of h5py's message without the path."""
    try:
        return h5py.File(path, mode)
    except OSError as err:
        raise InputError(
            f"{path}: not a readable HDF5 file ({str(err).splitlines()[0]}); delete it or rerun with --overwrite"
        ) from None


@contextmanager
def h5_source(source: Path | h5py.Group) -> Iterator[h5py.Group]:
    """An open file or group as is, or a path opened read-only for the block."""
    if isinstance(source, h5py.Group):
        yield source
        return
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: HDF5 file not found")
    with open_h5(path) as f:
        yield f


def list_h5_names(source: Path | h5py.Group) -> list[str]:
    """The parent path of every dataset, i.e. image names in a features or descriptors file and
    pair keys in a matches file, in sorted order."""
    names: set[str] = set()
    with h5_source(source) as f:
        f.visititems(lambda name, obj: names.add(name.rpartition("/")[0]) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def _group(f: h5py.Group, name: str, what: str) -> h5py.Group:
    if name not in f:
        raise MissingEntryError(f"{f.file.filename}: no {what} for image {name!r}")
    return f[name]


def read_keypoints(source: Path | h5py.Group, name: str) -> np.ndarray:
    """[N,2] float32 keypoints of an image (float16 files are widened)."""
    with h5_source(source) as f:
        return _group(f, name, "keypoints")["keypoints"][()].astype(np.float32)


def read_image_size(source: Path | h5py.Group, name: str) -> np.ndarray | None:
    """(w, h) of an image, or None when the file does not store it (hloc's match_dense does not)."""
    with h5_source(source) as f:
        grp = _group(f, name, "features")
        return grp["image_size"][()].astype(np.int64) if "image_size" in grp else None


def write_features(
    f: h5py.Group,
    name: str,
    keypoints: np.ndarray,
    scores: np.ndarray,
    image_size: Sequence[int],
    **extra: np.ndarray,
) -> None:
    """Replace `name`'s group with keypoints [N,2] (float32), scores [N], image_size (w, h) and any
    extra datasets (e.g. `descriptors` [D,N])."""
    if name in f:
        del f[name]
    grp = f.create_group(name)
    grp.create_dataset("keypoints", data=np.asarray(keypoints, np.float32).reshape(-1, 2))
    grp.create_dataset("scores", data=np.asarray(scores, np.float32))
    grp.create_dataset("image_size", data=np.asarray(image_size, np.int32))
    for key, value in extra.items():
        grp.create_dataset(key, data=value)


def find_pair(f: h5py.Group, name0: str, name1: str) -> tuple[str, bool]:
    """(key, reversed) of the pair in a matches file, trying (0,1), (1,0), legacy (0,1), legacy (1,0)."""
    for key, reverse in (
        (names_to_pair(name0, name1), False),
        (names_to_pair(name1, name0), True),
        (names_to_pair_old(name0, name1), False),
        (names_to_pair_old(name1, name0), True),
    ):
        if key in f and "matches0" in f[key]:
            return key, reverse
    raise MissingEntryError(f"{f.file.filename}: no matches for the pair ({name0!r}, {name1!r})")


def has_pair(f: h5py.Group, name0: str, name1: str) -> bool:
    """Whether the matches file holds the pair under any key form."""
    try:
        find_pair(f, name0, name1)
    except MissingEntryError:
        return False
    return True


def delete_pair(f: h5py.Group, name0: str, name1: str) -> None:
    """Remove the pair from a matches file, under every key form it is stored with."""
    while has_pair(f, name0, name1):
        del f[find_pair(f, name0, name1)[0]]


def read_matches(source: Path | h5py.Group, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray]:
    """Matches of (name0, name1): [M,2] int64 keypoint indices (column 0 into name0's keypoints) and
    [M] float32 scores (1 when the file has none).

    int16 `matches0` (hloc's match_features casts with `.short()`) get their index wraparound
    undone: values below -1 are indices above 32767.
    """
    with h5_source(source) as f:
        key, reverse = find_pair(f, name0, name1)
        grp = f[key]
        matches0 = grp["matches0"][()]
        if matches0.dtype == np.int16:
            matches0 = np.where(matches0 < -1, matches0.astype(np.int64) + 2**16, matches0)
        matches0 = matches0.astype(np.int64)
        idx0 = np.flatnonzero(matches0 > -1)
        matches = np.stack([idx0, matches0[idx0]], -1)
        if "matching_scores0" in grp:
            scores = grp["matching_scores0"][()][idx0].astype(np.float32)
        else:
            scores = np.ones(len(idx0), np.float32)
    return (matches[:, ::-1].copy() if reverse else matches), scores


def write_matches(f: h5py.Group, name0: str, name1: str, matches0: np.ndarray, scores0: np.ndarray) -> None:
    """Replace the pair's group (new key form) with matches0 [N0] int32 and matching_scores0 [N0] float32."""
    key = names_to_pair(name0, name1)
    if key in f:
        del f[key]
    grp = f.create_group(key)
    grp.create_dataset("matches0", data=np.asarray(matches0, np.int32))
    grp.create_dataset("matching_scores0", data=np.asarray(scores0, np.float32))


# what the other HDF5 files given for global descriptors hold, by a dataset they have
OTHER_FILES = {
    "keypoints": "a features file (keypoints per image)",
    "matches0": "a matches file (matches0 per pair)",
    "centroids": "a codebook (extract_global's *-codebook.h5: centroids)",
}


def list_global_descriptor_names(source: Path | h5py.Group) -> list[str]:
    """The image names of a global-descriptors file (`<name>/global_descriptor`), sorted; InputError
    saying what the file is instead (features, matches, codebook) when it holds none."""
    by_dataset: dict[str, set[str]] = {}

    def visit(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            parent, _, dataset = name.rpartition("/")
            by_dataset.setdefault(dataset, set()).add(parent)

    with h5_source(source) as f:
        f.visititems(visit)
        filename = f.file.filename
    if "global_descriptor" not in by_dataset:
        what = next((what for key, what in OTHER_FILES.items() if key in by_dataset), "an HDF5 file")
        raise InputError(
            f"{filename}: {what}, not global descriptors (global_descriptor per image): give extract_global's output"
        )
    return sorted(by_dataset["global_descriptor"])


def read_global_descriptors(source: Path | h5py.Group, names: Sequence[str]) -> np.ndarray:
    """[len(names), D] float32 global descriptors, as stored (no normalisation); a non-finite one is
    an InputError (it would drop out of every ranking unnoticed)."""
    with h5_source(source) as f:
        if not names:
            return np.zeros((0, 0), np.float32)
        rows = []
        for name in names:
            if name not in f or "global_descriptor" not in f[name]:
                list_global_descriptor_names(f)  # says what the file is when it is no descriptors file
                raise MissingEntryError(f"{f.file.filename}: no global descriptor for image {name!r}")
            rows.append(f[name]["global_descriptor"][()])
        out = np.stack(rows).astype(np.float32)
        if not np.isfinite(out).all():
            bad = names[int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])]
            raise InputError(f"{f.file.filename}: non-finite global descriptor for image {bad!r}")
        return out


def write_global_descriptor(f: h5py.Group, name: str, descriptor: np.ndarray) -> None:
    """Replace `name`'s group with global_descriptor [D] (float32)."""
    if name in f:
        del f[name]
    f.create_group(name).create_dataset("global_descriptor", data=np.asarray(descriptor, np.float32))


class KeypointReader:
    """Keypoints by image name from several features files (the first file holding a name wins);
    the files stay open until `close()`."""

    def __init__(self, paths: Iterable[Path]):
        self.files = [open_h5(p) for p in paths if Path(p).exists()]
        self.where = {}
        for f in reversed(self.files):
            self.where.update(dict.fromkeys(list_h5_names(f), f))

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def __call__(self, name: str) -> np.ndarray:
        return read_keypoints(self.where[name], name)

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> "KeypointReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
