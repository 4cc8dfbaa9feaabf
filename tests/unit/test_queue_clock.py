"""The two clocks of the wait for a launch (issue 15, 2.5): the queue is bounded by --max-queue (or
--timeout without it) and --timeout counts from the moment the task leaves the queue. A backend that
only reports states: no login is attempted while no instance has a forward."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qimg.errors import LaunchFailed
from qimg.launcher.backends.base import TaskView
from qimg.launcher.launch import Readiness, wait_ready


class States:
    """Submitted for `queued` seconds, then dispatched (never executing, so never ready)."""

    def __init__(self, queued: float) -> None:
        self.submitted = time.monotonic()
        self.queued = queued

    def view(self, task_id: str) -> TaskView:
        state = "Submitted" if time.monotonic() - self.submitted < self.queued else "FullyDispatched"
        return TaskView(task_id, "t", state, 1)

    def poll_not_before(self) -> float:
        return 0.0

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        return ""


def wait(backend: States, timeout: float, queue_timeout: float | None) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(LaunchFailed) as failed:
        wait = Readiness("alice", Path("/nonexistent"), timeout, queue_timeout=queue_timeout)
        wait_ready(backend, "id", wait)  # type: ignore[arg-type]
    return str(failed.value), time.monotonic() - started


def test_timeout_counts_from_leaving_the_queue() -> None:
    message, took = wait(States(queued=0.6), timeout=0.3, queue_timeout=5)
    assert message.startswith("not ready within 0.3 s of leaving the queue (FullyDispatched")
    assert took >= 0.9  # 0.6 queued, then the whole 0.3


def test_max_queue_bounds_the_queue_and_timeout_does_not_cut_it_short() -> None:
    message, took = wait(States(queued=60), timeout=0.2, queue_timeout=0.8)
    assert message == "still queued after 0.8 s (Submitted)"
    assert took >= 0.8


def test_without_max_queue_timeout_bounds_the_queue() -> None:
    message, took = wait(States(queued=60), timeout=0.4, queue_timeout=None)
    assert message == "still queued after 0.4 s (Submitted)"
    assert took >= 0.4
