"""What qimg remembers between commands: the last image built (for check, push and run --local)
and the last one pushed (for run on Qarnot), and the caches of look-ups (`cached`, `cache`)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from qimg.errors import FileError, UsageError
from qimg.files import atomic_write, read_regular

LAST_BUILT = "last-image"
LAST_PUSHED = "last-pushed"
# What `remember` writes: one image reference, checked in full by its reader (ImageRef.parse).
_REMEMBERED = re.compile(r"[!-~]{1,512}")


def state_dir() -> Path:
    """$XDG_STATE_HOME/qimg, else ~/.local/state/qimg. A relative XDG_STATE_HOME is invalid and ignored,
    as the XDG Base Directory spec says: its files would be found only from one working directory."""
    root = os.environ.get("XDG_STATE_HOME", "")
    return (Path(root) if os.path.isabs(root) else Path.home() / ".local" / "state") / "qimg"


# For each memory: what its image went through, the command that writes it, the commands that read it.
_MEMORIES = {
    LAST_BUILT: ("built", "qimg build", "qimg check/push/run --local"),
    LAST_PUSHED: ("pushed", "qimg push", "qimg run"),
}


def remember(what: str, ref: str) -> None:
    """Remember `ref` as the last image built or pushed. The image exists by then: a failure says so,
    and how to go on without the memory."""
    done, _writer, readers = _MEMORIES[what]
    try:
        atomic_write(state_dir() / what, ref + "\n", mode=0o644)
    except FileError as error:
        raise FileError(
            f"{ref} was {done}, but cannot be remembered as the last image {done} ({error}); "
            f"meanwhile name it: {readers} {ref}"
        ) from None


def recall(what: str) -> str | None:
    """The image remembered, None if none is; FileError if the file cannot be read or holds no image
    reference (it is left as it is: the next build or push replaces it)."""
    path = state_dir() / what
    try:
        ref = read_regular(path, 1024).decode("utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise FileError.of("read", path, error) from None
    if ref and _REMEMBERED.fullmatch(ref) is None:
        done, writer, _readers = _MEMORIES[what]
        raise FileError(
            f"{path} does not hold the name of the last image {done}: give the image by name "
            f"(the next `{writer}` replaces the file)"
        )
    return ref or None


def image_argument(given: str | None, remembered: str, usage: str) -> str:
    """The IMAGE argument, else the image qimg remembers (the last built, or the last pushed)."""
    ref = given or recall(remembered)
    if ref is None:
        raise UsageError(f"no image given and none {_MEMORIES[remembered][0]} yet: {usage}")
    return ref


def cached(name: str, limit: int) -> bytes | None:
    """The state file `name` of a cache, None when there is none or it cannot be read (or is larger
    than `limit`): the caller looks up again. Its content is untrusted: the caller checks it."""
    try:
        return read_regular(state_dir() / name, limit)
    except OSError:
        return None


def cache(name: str, text: str) -> None:
    """Write the state file `name` of a cache; one that cannot be written only costs a look-up."""
    with contextlib.suppress(FileError):
        atomic_write(state_dir() / name, text, mode=0o644)
