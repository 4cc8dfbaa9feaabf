"""The child processes of qimg's sessions (ssh, scp, code): started tied to qimg, waited for, and
ended with whatever ends the wait. No task, record or backend here: the session decides what runs."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from qimg.launcher import signals


def foreground(argv: list[str]) -> int:
    """One command on the user's terminal (scp, code), which ends with qimg: SIGTERM and SIGHUP end it
    too. Returns its exit code."""
    with signals.as_errors():
        return children([argv], terminal=True)


def children(commands: list[list[str]], *, terminal: bool = False) -> int:
    """Run the commands at once and wait for all; whatever ends the wait ends them too. Returns the
    first non-zero exit code, in the commands' order, else 0."""
    with running(commands, stdin=None if terminal else subprocess.DEVNULL) as processes:
        codes = [process.wait() for process in processes]
    return next((code for code in codes if code), 0)


_UP = "qimg-link-up"  # what the tunnel's ssh prints (its LocalCommand) once connected with its forwards
# Tunnels get a connection of their own (no master: the forwards end with their ssh), which says when
# it is up.
OWN_LINK = ("-o", "ControlPath=none", "-o", "PermitLocalCommand=yes", "-o", f"LocalCommand=echo {_UP}")


def until_down(argv: list[str], on_up: Callable[[], None]) -> tuple[int, bool, str]:
    """One ssh holding tunnels (`argv` with `OWN_LINK`), until it ends: its exit code, whether it was
    up, and its messages. They are kept (in a file: it may write for hours and nobody reads them
    meanwhile) for the one line the user gets about a drop."""
    with (
        tempfile.TemporaryFile() as messages,
        running([argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=messages) as (process,),
    ):
        assert process.stdout is not None  # a pipe, as asked
        up = process.stdout.readline().strip() == _UP.encode()  # the line, or "" when ssh ends first
        if up:
            on_up()
        code = process.wait()
        messages.seek(0)
        return code, up, messages.read().decode("utf-8", "replace")


@contextlib.contextmanager
def running(commands: list[list[str]], **popen: Any) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The commands started; on the way out, whatever ends the caller's wait, those still running are
    terminated (killed if they linger)."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for argv in commands:
            # The hook only calls prctl and getppid: no lock another thread could hold at the fork.
            tie = signals.dies_with_qimg()
            processes.append(subprocess.Popen(argv, preexec_fn=tie, **popen))  # noqa: PLW1509
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
