"""The one channel for warnings: what the user should know while qimg goes on (a broken record set
aside, a bucket kept, an ssh entry that could not be dropped). Any room calls `warn`; where the text
goes is decided above it: the entry point prints "qimg: warning: TEXT" on stderr (escaped), and a
command with a live display (the status line of `qimg run`) routes warnings through it with `to`.
Nothing is dropped: with no destination installed, a warning goes to stderr all the same.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Destination = Callable[[str], None]

_destinations: list[Destination] = []


def warn(text: str) -> None:
    if _destinations:
        _destinations[-1](text)
    else:
        print(line(text), file=sys.stderr)


def line(text: str) -> str:
    """How a warning reads, wherever it is drawn."""
    return f"qimg: warning: {text}"


@contextmanager
def to(destination: Destination) -> Iterator[None]:
    """Warnings go to `destination` inside the block (the innermost block wins)."""
    _destinations.append(destination)
    try:
        yield
    finally:
        _destinations.remove(destination)
