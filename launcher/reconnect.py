"""Tunnels that last: when the link under `qimg tunnel` (or `run --tunnel` alone) drops, it comes back.

The link drops when the instance restarts, moves, or a gateway forgets the connection. While the task
lives, qimg connects again with backoff, one line on stderr per attempt, re-pinning an instance that
moved (from the host key in its own output, checked by a login: `launch.refresh`). It gives up, with
one line, only when the task is gone: no longer known to its backend, or ended for good.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from qimg.errors import QimgError, TaskNotFound, first_line
from qimg.launcher import launch
from qimg.launcher.backends.base import Backend
from qimg.launcher.records import TaskRecord
from qimg.launcher.tunnels import Tunnel, check_port_free

FIRST_PAUSE, MAX_PAUSE = 1.0, 30.0
# A task seen ended this long is over. The local engine shows a container being restarted as exited for
# a moment, and a Qarnot task in an ended state never runs again: waiting a little costs nothing there.
ENDED_FOR = 10.0


@dataclass(frozen=True)
class Link:
    """How one ssh holding the forwards ended: its exit code, whether it was up, what it said."""

    code: int
    up: bool
    stderr: str

    @property
    def why(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return first_line(lines[-1], 200) if lines else f"ssh exited with {self.code}"


# One ssh holding the forwards, until it ends; it calls its argument once it is up.
Connect = Callable[[Callable[[], None]], Link]


def hold(
    backend: Backend,
    record: TaskRecord,
    tunnels: tuple[Tunnel, ...],
    connect: Connect,
    note: Callable[[str], None],
) -> int:
    """Keep the tunnels open until a signal ends qimg (the caller's), or the task is gone (TaskNotFound).
    `backend` is the task's, opened by the command: it is asked whether the task lives when the link drops.

    A first connection that never comes up is not retried: what ssh said (a refused key, a changed
    host key) is passed on, and its exit code returned, as a plain ssh would do."""
    link = connect(lambda: None)
    if not link.up:
        for line in link.stderr.splitlines():
            note(line.rstrip())
        return link.code
    pause, why, ended_since = FIRST_PAUSE, link.why, None
    back_up = functools.partial(note, f"tunnel to {record.name} up again")
    while True:
        ended_since = _check_alive(backend, record, ended_since)
        note(f"tunnel to {record.name} down ({why}): connecting again in {pause:g} s")
        time.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)
        if ended_since is not None:
            why = "the task shows as ended"  # it cannot be reached: look at it again
            continue
        try:
            record = launch.refresh(backend, record)  # follows an instance that moved, with its new key
        except QimgError as error:  # not ready yet where it moved to, or the API is out of reach
            why = first_line(error, 200)
            continue
        for tunnel in tunnels:  # the port was ours a moment ago: anyone else there now is an error
            check_port_free(tunnel)
        link = connect(back_up)
        why = link.why
        if link.up:
            pause = FIRST_PAUSE


def _check_alive(backend: Backend, record: TaskRecord, ended_since: float | None) -> float | None:
    """None while the task runs, else since when it has been seen ended; TaskNotFound once it is gone.
    An API that does not answer counts as running: the link may have dropped for the same reason."""
    try:
        view = backend.view(record.task_id)
    except TaskNotFound:
        raise TaskNotFound(f"tunnel to {record.name} closed: the task is gone (stopped or deleted)") from None
    except QimgError:
        return None
    if not view.ended:
        return None
    now = time.monotonic()
    if ended_since is not None and now - ended_since >= ENDED_FOR:
        raise TaskNotFound(f"tunnel to {record.name} closed: the task is {view.state}")
    return ended_since if ended_since is not None else now
