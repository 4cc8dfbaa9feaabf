"""The policy of tunnels that last (`reconnect.hold`), with a scripted backend and ssh: when to connect
again, how long to wait, what the user is told, and when to give up."""

from __future__ import annotations

import socket
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from qimg.errors import BackendError, LaunchFailed, QimgError, TaskNotFound
from qimg.launcher import reconnect, session
from qimg.launcher.backends.base import Backend, TaskView
from qimg.launcher.reconnect import Link
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint, free_local_port
from qimg.launcher.tunnels import Tunnel

RECORD = TaskRecord(
    "web", "local", "id-1", "alice", Path("/k"), None, [InstanceRecord(0, Endpoint("127.0.0.1", 2222), [])]
)
DROPPED = Link(255, True, "Connection to 127.0.0.1 closed by remote host.\r\n")
REFUSED = Link(255, False, "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n")


@dataclass
class Script:
    """What the backend says at each look, what each ssh does; the clock moves only when qimg sleeps."""

    states: list[str | Exception]
    links: list[Link]
    refreshes: list[QimgError | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)
    now: float = 0.0

    def view(self, task_id: str) -> TaskView:
        state = self.states.pop(0)
        if isinstance(state, Exception):
            raise state
        return TaskView(task_id, "web", state, 1)

    def connect(self, on_up: Callable[[], None]) -> Link:
        link = self.links.pop(0)
        if link.up:
            on_up()
        return link

    def refresh(self, _backend: object, record: TaskRecord) -> TaskRecord:
        error = self.refreshes.pop(0) if self.refreshes else None
        if error is not None:
            raise error
        return record

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Script]:
    def make(
        states: list[str | Exception], links: list[Link], refreshes: list[QimgError | None] | None = None
    ) -> Script:
        played = Script(states, links, refreshes or [])
        monkeypatch.setattr("qimg.launcher.launch.refresh", played.refresh)
        clock = types.SimpleNamespace(sleep=played.sleep, monotonic=lambda: played.now)
        monkeypatch.setattr("qimg.launcher.reconnect.time", clock)
        return played

    return make


def hold(played: Script) -> int:
    tunnels = (Tunnel(free_local_port(), 8888),)
    return reconnect.hold(cast(Backend, played), RECORD, tunnels, played.connect, played.notes.append)


def test_a_first_connection_that_never_comes_up_is_not_retried(script: Callable[..., Script]) -> None:
    played = script(states=[], links=[REFUSED])
    assert hold(played) == 255
    assert played.notes == ["ssh: connect to host 127.0.0.1 port 2222: Connection refused"]
    assert played.pauses == []


def test_reconnects_with_backoff_until_the_task_is_gone(script: Callable[..., Script]) -> None:
    played = script(
        states=["FullyExecuting"] * 4 + [TaskNotFound("no local task id-1")],
        links=[DROPPED, REFUSED, REFUSED, DROPPED, REFUSED],
    )
    with pytest.raises(
        TaskNotFound, match=r"^tunnel to web closed: the task is gone \(stopped or deleted\)$"
    ):
        hold(played)
    assert played.pauses == [1, 2, 4, 1]  # doubling while it fails, from the start again once it was up
    assert played.notes == [
        "tunnel to web down (Connection to 127.0.0.1 closed by remote host.): connecting again in 1 s",
        "tunnel to web down (ssh: connect to host 127.0.0.1 port 2222: Connection refused): "
        "connecting again in 2 s",
        "tunnel to web down (ssh: connect to host 127.0.0.1 port 2222: Connection refused): "
        "connecting again in 4 s",
        "tunnel to web up again",
        "tunnel to web down (Connection to 127.0.0.1 closed by remote host.): connecting again in 1 s",
    ]


def test_an_instance_not_ready_where_it_moved_is_waited_for(script: Callable[..., Script]) -> None:
    """refresh fails (the new forward does not log in yet), or the API is out of reach: no ssh is run."""
    played = script(
        states=["FullyExecuting", BackendError("timed out"), TaskNotFound("gone")],
        links=[DROPPED, DROPPED],
        refreshes=[LaunchFailed("web moved and is not ready: instance 0: nothing answers"), None],
    )
    with pytest.raises(TaskNotFound):
        hold(played)
    assert played.links == []  # the first ssh, and one after the refresh that worked
    assert "(web moved and is not ready: instance 0: nothing answers)" in played.notes[1]


def test_a_task_seen_ended_for_a_while_is_over(script: Callable[..., Script]) -> None:
    """A container being restarted looks exited for a moment: only a lasting end closes the tunnel."""
    played = script(states=["Success", "FullyExecuting", "Cancelled", "Cancelled", "Cancelled", "Cancelled",
                            "Cancelled"], links=[DROPPED, DROPPED])  # fmt: skip
    with pytest.raises(TaskNotFound, match=r"^tunnel to web closed: the task is Cancelled$"):
        hold(played)
    assert sum(played.pauses[2:]) >= reconnect.ENDED_FOR  # looked at again, not given up at once
    assert played.links == []


def test_a_port_taken_meanwhile_is_an_error(script: Callable[..., Script]) -> None:
    played = script(states=["FullyExecuting"], links=[DROPPED])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(QimgError, match=f"local port {port} is already in use"):
            reconnect.hold(
                cast(Backend, played), RECORD, (Tunnel(port, 8888),), played.connect, played.notes.append
            )


def test_qimg_tunnel_connects_to_its_backend_once(
    script: Callable[..., Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend that found the task is the one asked whether it lives when the link drops."""
    played = script(states=[TaskNotFound("gone")], links=[DROPPED])
    opened: list[str] = []

    def open_backend(name: str) -> Backend:
        opened.append(name)
        return cast(Backend, played)

    monkeypatch.setattr("qimg.launcher.backends.registry.open_backend", open_backend)
    monkeypatch.setattr("qimg.launcher.records.load", lambda _name: RECORD)
    monkeypatch.setattr("qimg.launcher.session._link", lambda _argv, on_up: played.connect(on_up))
    with pytest.raises(TaskNotFound, match="tunnel to web closed: the task is gone"):
        session.tunnel("web", "qarnot", Tunnel(free_local_port(), 8888), played.notes.append)
    assert opened == ["local"]  # the record's backend, opened once
