"""The one way qimg writes a file: whole or not at all, with its final mode from the start; and the
lock that serialises writers of files made from several others."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from qimg.errors import FileError


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `path`, created with `mode` (a private key is never
    readable by others, even for an instant), then rename it over `path`: a reader sees the old
    content or the new, never half of it. A symbolic link at `path` stays: its target is replaced
    (dotfile managers link ~/.ssh/config into a repository). FileError says what went wrong."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    # Unique per thread of a process: two writers of one file never share a temporary file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.unlink(missing_ok=True)  # left by a writer of the same ids that was killed mid-write
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data.encode() if isinstance(data, str) else data)
            os.chmod(tmp, mode)  # whatever the umask
            tmp.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
    except OSError as error:
        raise FileError.of("write", target, error) from None


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
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def user_path(text: str) -> str:
    """A path as a user typed it, made absolute once where it enters qimg: `~` expanded (`--key=~/k`
    reaches qimg unexpanded, as does a quoted one), a relative path joined to the working directory.
    Nothing else changes: symbolic links are not resolved (a link may be what a later check refuses),
    `..` is kept (after a link it is not the link's parent), and so is a trailing `/` or `/.`.
    ValueError (with its message) for what is no path."""
    if not text:
        raise ValueError("an empty path: give a file or directory")
    path = os.path.expanduser(text)
    if os.path.isabs(path):
        return path
    try:
        return os.path.join(os.getcwd(), path)
    except OSError as error:  # deleted under the shell that stands in it
        gone = error.strerror
        raise ValueError(f"{text} is relative, and the working directory is gone ({gone})") from None
