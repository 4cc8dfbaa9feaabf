"""One channel for warnings: the entry point shows them on stderr, escaped; a live display (the
status line of `qimg run`) takes them while it runs and makes way for them (as its notes)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from qimg import notices
from qimg.cli import warning
from qimg.display import say, terminal_stderr
from qimg.display.tasks import RunReporter
from qimg.launcher.backends.base import TaskView


def test_the_entry_points_line_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    with notices.to(warning):
        notices.warn("record /x/\x1b[8mjunk.json is unreadable")
    assert capsys.readouterr().err == "qimg: warning: record /x/\\x1b[8mjunk.json is unreadable\n"


def test_the_status_line_makes_way_for_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80, highlight=False)
    with notices.to(warning):
        with RunReporter(console, lambda record: None) as reporter:
            reporter.status(TaskView("t1", "web", "Submitted", 1), 3.0)
            assert reporter.live is not None
            notices.warn("an ssh entry could not be dropped")
            assert reporter.live is None, "the status line stopped for the warning"
        notices.warn("after the run")
    assert "\x1b[2Kan ssh entry could not be dropped\n" in screen.getvalue(), "one of run's notes"
    assert "after the run" not in screen.getvalue()
    assert capsys.readouterr().err == "qimg: warning: after the run\n"


NOTES = [
    "task web (c0ffee) stopped and deleted",
    "  a detail, dim on a terminal",
    "a reply: \x1b[8mhidden\x1b[0m [bold]not markup[/bold] :smile: 日本語 café",
    "a tab\tafter 日本 and\tagain",
    "",
]


def test_a_scripted_run_writes_its_notes_as_rich_would_without_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr no terminal (captured here): the reporter has no console, rich is not asked to draw, and
    each note is the line rich's console writes to a file (no style, no wrap, tabs as rich expands
    them)."""
    for variable in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(variable, raising=False)
    console = terminal_stderr()
    assert console is None
    with RunReporter(console, lambda record: None) as reporter:
        reporter.status(TaskView("t1", "web", "Submitted", 1), 3.0)
        reporter.transfer("input", 1, 2)
        for line in NOTES:
            reporter.note(line)
        notices.warn("a warning is one of its notes")
    written = capsys.readouterr().err
    by_rich = io.StringIO()
    file_console = Console(file=by_rich, highlight=False)  # a file: no terminal
    for line in [*NOTES, "a warning is one of its notes"]:
        say(file_console, line, "dim" if line.startswith("  ") else None)
    assert written == by_rich.getvalue()
    assert "\\x1b[8mhidden" in written and "\x1b" not in written


@pytest.mark.parametrize("variable", ["FORCE_COLOR", "TTY_COMPATIBLE"])
def test_what_rich_reads_first_keeps_the_console(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """FORCE_COLOR or TTY_COMPATIBLE may tell rich that a pipe is a terminal: rich decides then."""
    monkeypatch.setenv(variable, "1")
    assert isinstance(terminal_stderr(), Console)
