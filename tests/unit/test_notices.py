"""One channel for warnings: the entry point shows them on stderr, escaped; a live display (the
status line of `qimg run`) takes them while it runs and makes way for them (as its notes)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from qimg import notices
from qimg.cli import warning
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
