"""One run at a time per output: an exclusive lock file `<output>.lock` beside each output file (or
in an output folder), held for the whole run, so that two runs never write the same files at once.

The lock is `filelock`'s (flock: the kernel drops it when the holder dies, so a killed run leaves no
stale lock). The holder writes its pid and host into the lock file, so that the run it refuses can
say who holds it; filelock >= 4 leaves that text alone when another process tries the lock. A
folder made for the locks goes again when the run leaves nothing else in it (a run refused or
failed before any work leaves no trace).
"""

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import InputError


def lock_path(output: str | Path, folder: bool = False) -> Path:
    """The lock file of an output file, or of an output folder (`folder`: a file inside it)."""
    output = Path(output)
    return output / "run.lock" if folder else output.with_name(output.name + ".lock")


@contextmanager
def exclusive(*outputs: str | Path, folder: bool = False) -> Iterator[None]:
    """Hold the locks of `outputs` (files, or with `folder` output folders; the folder made if need
    be) for the block; one that another run holds is an InputError naming the output and the holder."""
    with ExitStack() as stack:
        for output in outputs:
            path = lock_path(output, folder)
            if not path.parent.exists():
                path.parent.mkdir(parents=True)
                locks = [lock_path(o, folder) for o in outputs]
                stack.callback(_remove_if_unused, path.parent, locks)  # after the release
            lock = FileLock(path, timeout=0)
            try:
                lock.acquire()
            except Timeout:
                holder = path.read_text(errors="replace").strip() or "another process"
                raise InputError(
                    f"{output}: in use by another run ({holder}, holding {path}); wait for it to end, or write to"
                    " another output folder"
                ) from None
            stack.callback(lock.release)
            path.write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
        yield


def _remove_if_unused(folder: Path, locks: list[Path]) -> None:
    """Remove `folder`, made for `locks`, when it holds nothing else."""
    if set(folder.iterdir()) <= set(locks):
        for path in locks:
            path.unlink(missing_ok=True)
        with suppress(OSError):  # something written meanwhile: it stays
            folder.rmdir()
