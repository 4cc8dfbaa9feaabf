"""Bucket names and object keys, in both directions, with nothing of the network.

- Names: `qimg-NAME-in-XXXXXXXX` (the inputs of task NAME) and `qimg-NAME-out-XXXXXXXX` (its results),
  the suffix being the start of the launch id. Valid S3 names (3 to 63 characters of lower-case
  letters, digits and dashes, a letter or digit at each end) that a user recognises, and that qimg
  parses back to list and purge exactly its own.
- Keys, going up: a local directory walked into (file, key) pairs; only regular files and
  directories, names that come back down unchanged.
- Keys, coming down: untrusted (anyone with access to the bucket, or the task itself, writes them).
  A key becomes a path strictly inside the target directory or is refused; files are written beside
  their final name and renamed, never through a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from qimg.errors import QimgError, UsageError

INPUTS, RESULTS = "in", "out"
_SUFFIX = 8  # hex digits of the launch id in a bucket name
_BUCKET = re.compile(r"qimg-(?P<task>[a-z0-9][a-z0-9-]{0,39})-(?P<kind>in|out)-(?P<launch>[0-9a-f]{8})")
MAX_KEY_BYTES = 1024  # S3's limit
MAX_PART_BYTES = 255  # a file name on common file systems
_UNSAFE_CHARACTERS = re.compile(
    r"[\x00-\x1f\x7f\\]"
)  # control characters; a backslash is a separator on Windows


@dataclass(frozen=True)
class BucketName:
    task: str
    kind: str  # INPUTS or RESULTS
    launch: str  # the first hex digits of the launch id


def bucket_name(task: str, kind: str, launch_id: str) -> str:
    """The bucket of task `task` (a valid task name) for its inputs or results."""
    name = f"qimg-{task}-{kind}-{launch_id[:_SUFFIX]}"
    if parse_bucket(name) is None:
        raise ValueError(f"not a qimg bucket name: {name}")
    return name


def parse_bucket(name: str) -> BucketName | None:
    """What a bucket name says, when qimg made it (None for any other bucket)."""
    match = _BUCKET.fullmatch(name)
    return BucketName(match["task"], match["kind"], match["launch"]) if match else None


def key_problem(key: str) -> str | None:
    """Why `key` cannot name a file (or, ending in /, a directory) under a target directory, or None."""
    if not key or len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        return f"empty or longer than {MAX_KEY_BYTES} bytes"
    if _UNSAFE_CHARACTERS.search(key):
        return "a control character or a backslash"
    if key.startswith("/"):
        return "an absolute path"
    parts = key.removesuffix("/").split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return "an empty, '.' or '..' path component"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES for part in parts):
        return f"a path component longer than {MAX_PART_BYTES} bytes"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "not UTF-8"
    return None


def _shown(text: str) -> str:
    return repr(text)[1:-1][:120]  # a hostile name cannot draw on the terminal


# --- going up ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A local directory, walked and checked: each (file or None for an empty directory, key)."""

    directory: Path
    entries: tuple[tuple[Path | None, str], ...]
    size: int  # bytes, for the progress bar


def walk_upload(option: str, directory: Path, prefix: str) -> Upload:
    """The files of `directory` as keys under `prefix/`. Refused (UsageError): anything that is not a
    directory, and inside it a symbolic link (it could lead out of the directory), a device, a socket
    or a FIFO, an unreadable entry, or a name that would not come back down unchanged."""
    if not directory.exists():
        raise UsageError(f"{option} {directory}: no such directory")
    if not directory.is_dir():
        raise UsageError(f"{option} {directory}: not a directory")
    entries: list[tuple[Path | None, str]] = []
    size = 0

    def refuse(path: Path, why: str) -> UsageError:
        return UsageError(f"{option} {directory}: {_shown(str(path))}: {why}")

    def visit(folder: Path, key_prefix: str) -> None:
        nonlocal size
        try:
            children = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            raise refuse(folder, f"cannot read it ({error.strerror})") from None
        if not children:
            entries.append((None, key_prefix + "/"))  # an empty directory comes back as one
        for child in children:
            path, key = Path(child.path), f"{key_prefix}/{child.name}"
            status = child.stat(follow_symlinks=False)
            mode = status.st_mode
            problem = key_problem(key)
            if problem:
                raise refuse(path, f"this name cannot be a bucket key ({problem})")
            if stat.S_ISDIR(mode):
                visit(path, key)
            elif not stat.S_ISREG(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise refuse(path, f"{kind}: qimg uploads regular files and directories only")
            elif not os.access(path, os.R_OK):
                raise refuse(path, "not readable")
            else:
                entries.append((path, key))
                size += status.st_size

    visit(directory, prefix)
    return Upload(directory, tuple(entries), size)


def open_entry(upload: Upload, source: Path) -> BinaryIO:
    """The file `source` of a walked upload, opened for reading from the upload's directory down,
    through directory handles and without following a link: a file or directory swapped for a symbolic
    link since the walk is refused (QimgError), so nothing from outside the directory is sent."""
    parts = source.relative_to(upload.directory).parts
    descriptor = os.open(upload.directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            # O_NONBLOCK: a FIFO put in the file's place must not block the open.
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                inner = os.open(part, flags, dir_fd=descriptor)
            except OSError as error:
                raise _changed(upload, source, error.strerror or str(error)) from None
            os.close(descriptor)
            descriptor = inner
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _changed(upload, source, "not a regular file")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _changed(upload: Upload, source: Path, why: str) -> QimgError:
    return QimgError(
        f"{_shown(str(source))} changed during the upload of {_shown(str(upload.directory))} ({why}): "
        "qimg sends regular files from inside the directory only; run again once it holds still"
    )


# --- coming down ------------------------------------------------------------------------------------


def check_target(option: str, target: Path, *, reusable: bool) -> Path:
    """A directory that results go into (absolute: made so where it entered): absent, or an empty
    directory, or (`reusable`) one qimg wrote results into before, whose files of the same names are
    then replaced."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"{option} {target}: not a directory")
    if target.is_dir() and not reusable and any(target.iterdir()):
        raise UsageError(
            f"{option} {target}: the directory is not empty and results would overwrite its files: "
            "give an empty or new directory"
        )
    existing = next(parent for parent in (target, *target.parents) if parent.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {target}: {existing} is not writable")
    return target


Fill = Callable[[BinaryIO], object]  # what it returns is ignored


def write_into(root: Path, key: str, fill: Fill) -> None:
    """The object `key` written under `root` by `fill(handle)`: into a new file beside its final name,
    then renamed over it. Raises ValueError for a key that would leave `root`, or a path through a
    symbolic link or a file; OSError from the file system.

    Every step goes through directory handles opened without following links, never by path after a
    check: a directory swapped for a symbolic link meanwhile cannot lead a file out of `root`."""
    problem = key_problem(key)
    if problem:
        raise ValueError(f"unsafe key {_shown(key)}: {problem}")
    *folders, name = key.removesuffix("/").split("/")
    directory = _open_directory(root, None, str(root), key)  # `root` itself is no link either
    try:
        shown = root
        for part in [*folders, name] if key.endswith("/") else folders:
            shown = shown / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=directory)
            inner = _open_directory(shown, directory, part, key)
            os.close(directory)
            directory = inner
        if not key.endswith("/"):
            _write_file(directory, name, shown / name, key, fill)
    finally:
        os.close(directory)


def _open_directory(shown: Path, parent: int | None, name: str, key: str) -> int:
    """A handle on the directory `name` (in `parent`, or a path), which must not be a symbolic link."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as error:
        if error.errno in {errno.ELOOP, errno.ENOTDIR}:  # a link (even to a directory), or a file
            raise ValueError(f"{_shown(key)}: {_shown(str(shown))} is not a directory") from None
        raise


def _write_file(directory: int, name: str, shown: Path, key: str, fill: Fill) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode):
            raise ValueError(f"{_shown(key)}: {_shown(str(shown))} exists and is not a regular file")
    partial = f".{name[:200]}.qimg-{os.getpid()}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        descriptor = os.open(partial, flags, 0o644, dir_fd=directory)
    except FileExistsError:  # left by an earlier run: never opened as found (a link to elsewhere)
        os.unlink(partial, dir_fd=directory)
        descriptor = os.open(partial, flags, 0o644, dir_fd=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            fill(handle)
        # rename() replaces a link at the final name, never what it points to.
        os.replace(partial, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial, dir_fd=directory)
        raise
