"""Crash-safe writes: a file is either its previous version (or absent) or complete, never truncated.

One mechanism, `atomic_path`: the caller writes a temporary sibling `.<name>.<random>.tmp`; on
success it is fsynced, renamed over the target (`os.replace`, atomic on POSIX) and the folder is
fsynced, so that the rename itself survives a power cut. On an exception the temporary file is
removed and the target is untouched; a kill leaves the temporary file behind (`leftovers`).
"""

import glob
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj, path)`, crash-safe."""
    import torch  # here: the rest of the module (and its importers) need no torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
