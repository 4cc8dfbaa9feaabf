"""A task found by name (`names.resolve`): one policy for a record that cannot be read, whatever the
command: set aside and said, then the backend's listing finds the task; only logging in, which needs
the record, fails with it."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from qimg import notices
from qimg.launcher import names
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import Backend, TaskView
from qimg.launcher.records import BrokenRecord


class Listing:
    """A backend that lists one task of that name."""

    name = "local"

    def tasks(self) -> list[TaskView]:
        return [TaskView("id-web", "web", "FullyExecuting", 1)]


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The record of task web is broken; the backends opened are counted."""
    (tmp_path / "qimg" / "tasks").mkdir(parents=True)
    (tmp_path / "qimg" / "tasks" / "web.json").write_text("{garbled")
    opened: list[str] = []

    def open_backend(name: str) -> Backend:
        opened.append(name)
        return cast(Backend, Listing())

    monkeypatch.setattr(registry, "open_backend", open_backend)
    return opened


@pytest.mark.parametrize("unfinished", [False, True])  # `qimg logs` and `snapshot`; `qimg stop`
def test_a_broken_record_is_said_and_the_listing_finds_the_task(broken: list[str], unfinished: bool) -> None:
    warned: list[str] = []
    with notices.to(warned.append):
        found = names.resolve("web", "local", unfinished=unfinished)
    assert (found.record, found.task_id, broken) == (None, "id-web", ["local"])
    (warning,) = warned
    assert "web.json is unreadable" in warning and "moved aside" in warning


def test_logging_in_needs_the_record_it_is_the_error(broken: list[str]) -> None:
    with pytest.raises(BrokenRecord, match=r"web.json is unreadable .*`qimg stop web` stops it"):
        names.login("web", "local")
    assert broken == []  # refused before any backend is asked
