"""What qimg remembers between commands: the last image built (for check, push and run --local)
and the last one pushed (for run on Qarnot)."""

from __future__ import annotations

import os
from pathlib import Path

from qimg.errors import UsageError
from qimg.files import atomic_write

LAST_BUILT = "last-image"
LAST_PUSHED = "last-pushed"


def state_dir() -> Path:
    root = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "qimg"


def remember(what: str, ref: str) -> None:
    atomic_write(state_dir() / what, ref + "\n", mode=0o644)


def recall(what: str) -> str | None:
    try:
        return (state_dir() / what).read_text().strip() or None
    except FileNotFoundError:
        return None


def image_argument(given: str | None, remembered: str, usage: str) -> str:
    """The IMAGE argument, else the image qimg remembers (the last built, or the last pushed)."""
    ref = given or recall(remembered)
    if ref is None:
        done = "built" if remembered == LAST_BUILT else "pushed"
        raise UsageError(f"no image given and none {done} yet: {usage}")
    return ref
