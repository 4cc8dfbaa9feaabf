"""The one way qimg writes a file: whole or not at all, with its final mode from the start; the one
way it reads a file it keeps (state, records, ssh files): only a regular file, and only so much; and
the lock that serialises writers of files made from several others."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

from qimg.errors import FileError

# What a state file of qimg's may weigh: a record of 1024 instances with their pinned keys is far less.
READ_LIMIT = 16 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"),
)  # fmt: skip


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a file")


class NotRegularFile(OSError):
    """A path that is no regular file (a FIFO would block a reader, a device never end), or one too
    large to be what qimg wrote. An OSError, so that every reader's handling of unreadable files
    applies; its text is the reason alone."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EINVAL, reason)

    def __str__(self) -> str:
        return str(self.strerror)


def read_regular(path: Path, limit: int = READ_LIMIT) -> bytes:
    """The bytes of the regular file at `path` (a symbolic link to one is followed), at most `limit`.
    Nothing else is opened for reading: a FIFO, a device or a socket raises NotRegularFile at once
    (never a hang, never endless bytes), as does a file larger than `limit`; a folder raises
    IsADirectoryError; the open's own OSError (FileNotFoundError, ...) otherwise."""
    found = os.stat(path).st_mode  # before the open: a device is not even opened
    if not stat.S_ISREG(found):
        raise _not_regular(path, found)
    # O_NONBLOCK: a FIFO swapped in since the stat does not block the open; fstat then refuses it.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(descriptor, "rb") as handle:
        opened = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(opened):
            raise _not_regular(path, opened)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotRegularFile(f"larger than {limit} bytes")
    return data


def _not_regular(path: Path, mode: int) -> OSError:
    if stat.S_ISDIR(mode):
        return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    if path.is_symlink():
        return NotRegularFile(
            f"a symbolic link to {os.path.realpath(path)}, {_kind(mode)}, not a regular file"
        )
    return NotRegularFile(f"{_kind(mode)}, not a regular file")


def _write_target(path: Path) -> Path:
    """Where writing `path` puts the bytes: `path` itself (absent, or a regular file), or the regular
    file a symbolic link at `path` leads to (dotfile managers link ~/.ssh/config into a repository).
    Anything else is refused: renaming over a device, a FIFO or a socket replaces it (as root,
    `~/.ssh/config -> /dev/null` would turn /dev/null into a file), and a link that leads nowhere
    would make a file wherever it points."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # none there, or a folder of the path is missing or a file: the write says which
        return path
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise FileError.of("write", path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    fix = "qimg writes only regular files: remove it (or link it to a regular file)"
    if not stat.S_ISLNK(mode):
        raise FileError(f"cannot write {path}: it is {_kind(mode)}, not a regular file; {fix}")
    target = Path(os.path.realpath(path))
    try:
        mode = os.lstat(target).st_mode
    except OSError as error:
        raise FileError(
            f"cannot write {path}: it is a symbolic link to {target}, which cannot be reached "
            f"({error.strerror}); create that file, or remove the link"
        ) from None
    if not stat.S_ISREG(mode):
        what = f"a symbolic link to {target}, {_kind(mode)}"
        raise FileError(f"cannot write {path}: it is {what}, not a regular file; {fix}")
    return target


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `path`, created with `mode` (a private key is never
    readable by others, even for an instant), then rename it over `path`: a reader sees the old
    content or the new, never half of it. A symbolic link at `path` stays: the regular file it leads
    to is replaced the same way, beside itself; a link to anything else, or a path that is no regular
    file, is refused (see `_write_target`). FileError says what went wrong."""
    target = _write_target(path)
    # Unique per thread of a process: two writers of one file never share a temporary file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    try:
        if target == path:  # a link's target exists: its folder too
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.unlink(missing_ok=True)  # left by a writer of the same ids that was killed mid-write
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data.encode() if isinstance(data, str) else data)
            os.chmod(tmp, mode)  # whatever the umask
            # The target was checked a moment ago: only who may write its folder can swap it since,
            # and they could replace it themselves.
            tmp.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
    except OSError as error:
        raise FileError.of("write", target, error) from None


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
