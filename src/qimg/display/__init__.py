"""What the CLI shows: one room per command group (`images`, `tasks`, `data`, `account`, `keys`), and
here the helpers they share. Status lines, progress bars and tables on a terminal, plain lines
otherwise; the commands hand each result to their group's room and print nothing themselves.

rich is imported inside the functions that draw, so that `qimg --help` does not load it.
Text from outside (the engine, a task, Qarnot's replies) goes through `shown`: no markup, no emoji
codes, no hard wrap, and no control character reaches the terminal (rich strips only a few).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


# C0 but tab, DEL and C1 (ESC starts the sequences that set the title, write the clipboard or hide text),
# and the bidirectional overrides that make text read other than it is.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """Text from outside, safe for a terminal: every control character escaped (ESC as \\x1b)."""
    return _CONTROLS.sub(lambda found: ascii(found.group())[1:-1], text)


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def terminal_stderr() -> Console | None:
    """stderr's console where rich may draw on it (status lines, bars, styles); None where rich would
    see no terminal there, told without importing it (20 ms of a scripted `qimg run`, before its
    first engine request): stderr is no tty, and neither TTY_COMPATIBLE nor FORCE_COLOR, which rich
    reads first, says otherwise. There, `plain_note` writes lines as rich would."""
    if {"TTY_COMPATIBLE", "FORCE_COLOR"} & os.environ.keys():
        return stderr()
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        terminal = isatty is None or isatty()
    except ValueError:  # closed: rich's own answer is then "no terminal", but it is rich's to give
        terminal = True
    return stderr() if terminal else None


def say(console: Console, line: str, style: str | None = None) -> None:
    console.print(shown(line), style=style, markup=False, emoji=False, soft_wrap=True)


def plain_note(line: str) -> None:
    """`note` where `terminal_stderr` is None: the line as rich writes it to a file (no style, no wrap),
    in one write (notes come from several threads). rich expands a tab to the next column by the
    cells of the text before it: a line with one goes through rich."""
    text = shown(line)
    if "\t" in text:
        note(line)
        return
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def note(line: str) -> None:
    """One line the user should know of, on stderr (what a command says while it works)."""
    say(stderr(), line)


def print_json(document: object) -> None:
    """The one JSON object of a command run with --json, on stdout."""
    print(json.dumps(document), flush=True)
