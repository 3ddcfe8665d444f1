"""The resumable store of raw semi-dense matches: match_dense's work in progress.

A folder of HDF5 shards, one per chunk of pairs. A shard is written to a temporary file and renamed
into place once complete, so a killed run loses at most the chunk in flight and never leaves a
damaged shard; a rerun skips every stored pair. A shard of K pairs holds `names` [K,2] (image 0,
image 1), `image_sizes` [K,2,2] ((w, h) of image 0 and of image 1), `offsets` [K+1] into the
concatenated `keypoints0`, `keypoints1` [M,2] float32 (original-image pixels, pixel-centre
convention), `scores` [M] float32 and `fingerprints` [K,2] (utils/provenance.py: of image 0 and of
image 1 as matched). `identity.json` records what made the matches (configuration and weights): a
rerun with anything else fails instead of mixing results; a stored pair of an image whose file has
changed since is ignored (matched again). A damaged identity.json or shard (a disk fault: both are
written whole) is an InputError naming it: delete the folder or rerun with --overwrite.
"""

import json
import shutil
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .utils import atomic
from .utils.errors import InputError
from .utils.pairs import Pair
from .utils.provenance import differences

FIELDS = ("keypoints0", "keypoints1", "scores")


class RawMatchStore:
    """Raw matches by pair (name0, name1), in the pair's orientation, of the images as `fingerprints`
    (name -> fingerprint) has them now."""

    def __init__(self, root: Path, identity: dict[str, Any], fingerprints: Mapping[str, str], max_open: int = 16):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fingerprints = fingerprints
        identity_path = self.root / "identity.json"
        if not identity_path.exists():
            atomic.write_text(identity_path, json.dumps(identity, sort_keys=True, default=str))
        elif diff := differences(self._stored_identity(identity_path), identity):
            raise InputError(
                f"{identity_path}: the stored matches of an interrupted run were made with other settings ({diff});"
                " delete the folder or rerun with --overwrite"
            )
        for stale in self.root.glob(".*.tmp"):
            stale.unlink()
        self.shards = sorted(self.root.glob("shard-*.h5"))
        self.index: dict[Pair, tuple[int, int]] = {}  # pair -> (shard, position in the shard)
        self.offsets: list[np.ndarray] = []
        self.image_sizes: list[np.ndarray] = []
        for s, path in enumerate(self.shards):
            with self._open(path) as f:
                try:
                    self._register(
                        s, f["names"].asstr()[()], f["offsets"][()], f["image_sizes"][()], f["fingerprints"].asstr()[()]
                    )
                except (KeyError, OSError, ValueError) as err:
                    raise self._damaged(path, err) from None
        self.max_open = max_open
        self.open_files: OrderedDict[int, h5py.File] = OrderedDict()

    def _damaged(self, path: Path, err: Exception) -> InputError:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        return InputError(f"{path}: damaged ({reason}); delete the folder {self.root} or rerun with --overwrite")

    def _stored_identity(self, path: Path) -> dict[str, Any]:
        try:
            stored = json.loads(path.read_text())
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise self._damaged(path, err) from None
        if not isinstance(stored, dict):
            raise self._damaged(path, ValueError(f"a JSON {type(stored).__name__}, not an object"))
        return stored

    def _open(self, path: Path) -> h5py.File:
        try:
            return h5py.File(path, "r")
        except OSError as err:
            raise self._damaged(path, err) from None

    def _register(
        self, shard: int, names: np.ndarray, offsets: np.ndarray, image_sizes: np.ndarray, fingerprints: np.ndarray
    ) -> None:
        self.offsets.append(offsets)
        self.image_sizes.append(image_sizes)
        for i, ((name0, name1), (fp0, fp1)) in enumerate(zip(names, fingerprints)):
            if (self.fingerprints.get(str(name0)), self.fingerprints.get(str(name1))) == (str(fp0), str(fp1)):
                self.index[(str(name0), str(name1))] = (shard, i)

    def __contains__(self, pair: Pair) -> bool:
        return tuple(pair) in self.index

    def __len__(self) -> int:
        return len(self.index)

    def add(self, results: dict[Pair, dict[str, np.ndarray]]) -> None:
        """Store a chunk of pairs as one new shard. Each result has keypoints0/keypoints1 [M,2],
        scores [M] and image_size0/image_size1 (w, h)."""
        if not results:
            return
        names = np.array(list(results), dtype=object).reshape(-1, 2)
        offsets = np.r_[0, np.cumsum([len(r["scores"]) for r in results.values()])].astype(np.int64)
        image_sizes = np.array([[r["image_size0"], r["image_size1"]] for r in results.values()], np.int64)
        fingerprints = np.array(
            [[self.fingerprints[a], self.fingerprints[b]] for a, b in results], dtype=object
        ).reshape(-1, 2)
        path = self.root / f"shard-{len(self.shards):06d}.h5"
        with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("names", data=names, dtype=h5py.string_dtype())
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("image_sizes", data=image_sizes)
            f.create_dataset("fingerprints", data=fingerprints, dtype=h5py.string_dtype())
            for key in FIELDS:
                shape = (-1, 2) if key.startswith("keypoints") else (-1,)
                data = np.concatenate([np.asarray(r[key], np.float32).reshape(shape) for r in results.values()])
                f.create_dataset(key, data=data)
        self.shards.append(path)
        self._register(len(self.shards) - 1, names, offsets, image_sizes, fingerprints)

    def _file(self, shard: int) -> h5py.File:
        f = self.open_files.pop(shard, None)
        if f is None:
            f = self._open(self.shards[shard])
        self.open_files[shard] = f
        if len(self.open_files) > self.max_open:
            self.open_files.popitem(last=False)[1].close()
        return f

    def read(self, pair: Pair, fields: tuple[str, ...] = FIELDS) -> dict[str, np.ndarray]:
        """The pair's stored arrays among keypoints0, keypoints1, scores."""
        shard, i = self.index[tuple(pair)]
        lo, hi = self.offsets[shard][i : i + 2]
        f = self._file(shard)
        try:
            return {key: f[key][lo:hi] for key in fields}
        except (KeyError, OSError) as err:
            raise self._damaged(self.shards[shard], err) from None

    def image_size(self, pair: Pair, side: int) -> tuple[int, int]:
        """(w, h) of the pair's image 0 or 1."""
        shard, i = self.index[tuple(pair)]
        w, h = self.image_sizes[shard][i, side]
        return int(w), int(h)

    def close(self) -> None:
        while self.open_files:
            self.open_files.popitem()[1].close()

    def delete(self) -> None:
        self.close()
        shutil.rmtree(self.root)
