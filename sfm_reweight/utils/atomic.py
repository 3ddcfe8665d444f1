"""Crash-safe writes: a file is either its previous version (or absent) or complete, never truncated.

One mechanism, `atomic_path`: the caller writes a temporary sibling `.<name>.<random>.tmp`; on
success it is fsynced, renamed over the target (`os.replace`, atomic on POSIX) and the folder is
fsynced, so that the rename itself survives a power cut. On an exception the temporary file is
removed and the target is untouched; a kill leaves the temporary file behind (`leftovers`). A full
disk (ENOSPC, or HDF5's report of it) is a `DiskFullError` naming the target and the space left.
"""

import errno
import glob
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SfmReweightError


class DiskFullError(SfmReweightError, OSError):
    """A write that ran out of disk space; the message names the file and the space left."""


def _disk_full(err: OSError) -> bool:
    # HDF5 reports a failed write as an OSError without errno, its text quoting the system's
    return err.errno == errno.ENOSPC or f"errno = {errno.ENOSPC}," in str(err) or "No space left" in str(err)


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000:
            return f"{nbytes:.0f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.0f} TB"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in `path`'s folder (created if need be; the file itself does not exist yet)
    to write `path`'s new content to; it replaces `path` when the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as err:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if not _disk_full(err) or isinstance(err, DiskFullError):
            raise
        raise DiskFullError(
            f"{path}: the disk is full ({_size(shutil.disk_usage(path.parent).free)} left in {path.parent}; the new"
            f" file had reached {_size(written)}); free space and rerun the same command: it resumes, and the files"
            " already written are intact"
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def leftovers(path: str | Path) -> list[Path]:
    """The temporary files that killed writes of `path` left behind."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def json_ready(value: Any) -> Any:
    """numpy values -> Python; inf/nan -> None (strict JSON, which a browser's parser needs)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(obj: Any, path: str | Path) -> Path:
    """Write `obj` as strict JSON (non-finite numbers become null), crash-safe."""
    return write_text(path, json.dumps(json_ready(obj), indent=1, allow_nan=False))


def torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj, path)`, crash-safe."""
    import torch  # here: the rest of the module (and its importers) need no torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
