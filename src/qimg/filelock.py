"""File locks, the one platform-specific part of qimg's state files: `flock` on POSIX (Linux, macOS),
`msvcrt.locking` on Windows. The Windows branch is written, not run: qimg was run on Linux only (see the
README, "Where qimg runs"); a test proves that this module, and every other, imports there.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from qimg.errors import FileError

_RETRY = 0.05  # seconds between tries on Windows, whose lock call does not wait long by itself


def _try_lock(handle: IO[str]) -> bool:
    """Take the lock if it is free: True; False if another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_lock(handle: IO[str]) -> None:
    if sys.platform == "win32":
        while not _try_lock(handle):
            time.sleep(_RETRY)
        return
    import fcntl

    fcntl.flock(handle, fcntl.LOCK_EX)


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on the file `path` (created if need be) for the block; the system releases
    it when its holder dies, so a killed qimg never leaves a stale one. Yields True once it is held;
    without `wait`, False at once if another process holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = path.open("a")
    except OSError as error:
        raise FileError.of("write", path, error) from None
    with handle:
        if wait:
            _wait_lock(handle)
        elif not _try_lock(handle):
            yield False
            return
        yield True
