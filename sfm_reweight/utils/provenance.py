"""What stored work was made from, so that a rerun reuses it only when it is the same work.

A stage's output file records its provenance in the root attributes (one JSON value per key: the
resolved configuration, the weights' content hash), each image's group the fingerprint of the image
its features come from, and each pair's group the fingerprints of its two images. A rerun with
another provenance is refused (`check_provenance`); an image whose file changed invalidates exactly
its features and the pairs that contain it (`stale_images`, `fresh_pairs`).
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
from tqdm import tqdm

from ..io import find_pair, names_to_pair, open_h5
from .errors import InputError, MissingEntryError
from .pairs import Pair

FINGERPRINT = "fingerprint"  # attribute of an image's group: the fingerprint of the image its features come from
PAIR_FINGERPRINTS = "fingerprints"  # attribute of a pair's group: those of its images, in the key's order
REUSE_HINT = "write to another output folder or file name, or rerun with --overwrite"  # the `fix` of the stages


def file_hash(path: str | Path) -> str:
    """The first 16 hex digits of the file's sha256 (e.g. of a checkpoint)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def image_fingerprint(path: str | Path) -> str:
    """`<size>:<sha256 prefix>` of an image file's content. The whole file is hashed, so that a photo
    replaced by another of the same size, or one edited in place, is always noticed, and a copy of the
    folder (whatever its timestamps) keeps its fingerprints; hashing a photo costs far less than
    decoding it, let alone matching it."""
    return f"{Path(path).stat().st_size}:{file_hash(path)}"


def image_fingerprints(image_dir: Path, names: Iterable[str]) -> dict[str, str]:
    """Fingerprints of the named images under `image_dir` (a progress bar only when it takes a while:
    usually it is over before a bar would say anything)."""
    names = list(names)
    return {n: image_fingerprint(Path(image_dir, n)) for n in tqdm(names, desc="fingerprints", unit="image", delay=2)}


def _canonical(value: Any) -> Any:
    """`value` as JSON would give it back (tuples become lists, paths strings), for comparisons."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], limit: int = 4) -> str:
    """What differs between two provenances, on one line ("" when they agree), e.g.
    "weights 0123abcd... -> 4567ef01...; conf.max_kps 8192 -> 4096"."""
    old, new = _flat(_canonical(dict(stored))), _flat(_canonical(dict(current)))
    missing = "(none)"
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k, missing) != new.get(k, missing)]
    text = "; ".join(
        f"{k} {json.dumps(old.get(k, missing))} -> {json.dumps(new.get(k, missing))}" for k in keys[:limit]
    )
    return text + (f"; {len(keys) - limit} more" if len(keys) > limit else "")


def write_provenance(attrs: h5py.AttributeManager, provenance: Mapping[str, Any]) -> None:
    """Record a provenance in a file's root attributes, one JSON value per key."""
    for key, value in provenance.items():
        attrs[key] = json.dumps(_canonical(value), sort_keys=True)


def read_provenance(path: Path, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The provenance a file records (`write_provenance`): its root attributes (those of `keys`
    present, or all), decoded."""
    with open_h5(path) as f:
        return {key: json.loads(f.attrs[key]) for key in (f.attrs if keys is None else keys) if key in f.attrs}


def check_provenance(path: Path, provenance: Mapping[str, Any], fix: str) -> None:
    """Refuse to add work to the file at `path` (if it exists) unless it records the same provenance;
    the one-line InputError says what differs and, in `fix`, how to proceed."""
    if not Path(path).exists():
        return
    stored = read_provenance(path, provenance)
    if not stored:
        raise InputError(
            f"{path}: holds no record of the settings that made it (another tool or an older version); {fix}"
        )
    if diff := differences(stored, provenance):
        raise InputError(f"{path}: made with other settings ({diff}); {fix}")


def record_image(f: h5py.Group, name: str, fingerprint: str) -> None:
    """Mark the group of image `name` (just written) as made from the file with `fingerprint`."""
    f[name].attrs[FINGERPRINT] = fingerprint


def record_pair(f: h5py.Group, name0: str, name1: str, fingerprints: Mapping[str, str]) -> None:
    """Mark the group of pair (name0, name1) (just written, in this order) with its images' fingerprints."""
    f[names_to_pair(name0, name1)].attrs[PAIR_FINGERPRINTS] = [fingerprints[name0], fingerprints[name1]]


def stale_images(f: h5py.Group, fingerprints: Mapping[str, str]) -> set[str]:
    """The images of `fingerprints` that the features file holds for another version of the file
    (or without a fingerprint)."""
    return {n for n, fp in fingerprints.items() if n in f and f[n].attrs.get(FINGERPRINT) != fp}


def fresh_pairs(f: h5py.Group, pairs: Iterable[Pair], fingerprints: Mapping[str, str]) -> set[Pair]:
    """The pairs that the matches file holds for the current versions of both images."""
    fresh = set()
    for name0, name1 in pairs:
        try:
            key, reverse = find_pair(f, name0, name1)
        except MissingEntryError:
            continue
        stored = list(f[key].attrs.get(PAIR_FINGERPRINTS, []))
        if stored == (
            [fingerprints[name1], fingerprints[name0]] if reverse else [fingerprints[name0], fingerprints[name1]]
        ):
            fresh.add((name0, name1))
    return fresh
