"""The one way qimg writes a file: whole or not at all, with its final mode from the start."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `path`, created with `mode` (a private key is never
    readable by others, even for an instant), then rename it over `path`: a reader sees the old
    content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a process of the same pid that was killed mid-write
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)  # whatever the umask
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
