"""What qimg remembers between commands: the last image built (for check, push and run --local)
and the last one pushed (for run on Qarnot)."""

from __future__ import annotations

import os
from pathlib import Path

LAST_BUILT = "last-image"
LAST_PUSHED = "last-pushed"


def state_dir() -> Path:
    root = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "qimg"


def remember(what: str, ref: str) -> None:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{what}.new"
    tmp.write_text(ref + "\n")
    tmp.replace(directory / what)


def recall(what: str) -> str | None:
    try:
        return (state_dir() / what).read_text().strip() or None
    except FileNotFoundError:
        return None
