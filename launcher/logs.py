"""A task's output followed: `qimg logs` (read without consuming it, what is new shown once)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from qimg.errors import Interrupted, TaskNotFound
from qimg.launcher import names


def follow_output(name: str, backend: str, follow: bool, write: Callable[[str, bool], None]) -> None:
    """The task's output (stdout, then stderr) to `write(text, is_stderr)`; with `follow`, what comes
    next too, until the task ends. Read without consuming it (Qarnot's "fresh" output is consumed by
    whoever asks first), so `logs` shows the same text every time."""
    found = names.resolve(name, backend)
    shown = {False: "", True: ""}
    try:
        while True:
            for is_stderr in (False, True):
                text = found.backend.output(found.task_id, stderr=is_stderr)
                write(new_part(shown[is_stderr], text), is_stderr)
                shown[is_stderr] = text
            if not follow or found.backend.view(found.task_id).ended:
                return
            time.sleep(1)
    except TaskNotFound:  # the task was stopped meanwhile
        return
    except Interrupted as interruption:  # Ctrl-C ends following as the user meant it; others end qimg
        if interruption.signum != signal.SIGINT:
            raise


def new_part(before: str, now: str) -> str:
    """What `now` adds to `before`. The output is a bounded buffer that drops its oldest lines, so
    `now` may start inside `before`: the longest end of `before` that `now` starts with is skipped."""
    if now.startswith(before):
        return now[len(before) :]
    for cut in range(len(before)):
        if before[cut] == "\n" and now.startswith(before[cut + 1 :]):
            return now[len(before) - cut - 1 :]
    return now
