"""What qimg remembers between commands: the last image it built (for push, run and check)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    root = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "qimg"


def remember_last_image(ref: str) -> None:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "last-image.new"
    tmp.write_text(ref + "\n")
    tmp.replace(directory / "last-image")


def last_image() -> str | None:
    try:
        return (state_dir() / "last-image").read_text().strip() or None
    except FileNotFoundError:
        return None
