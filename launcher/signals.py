"""What SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal went away) do while a task exists.

Python's default turns only SIGINT into an exception; SIGTERM and SIGHUP would end qimg at once and
leave the task running and billed. Here each of them raises `Interrupted`, so that every clean-up on
the way out runs. Handlers, unlike SIG_IGN, are not inherited by child processes (ssh).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType

from qimg.errors import Interrupted

Handler = Callable[[int, FrameType | None], None] | int
STOPPING = (signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))  # Windows has no SIGHUP
ALL = (signal.SIGINT, *STOPPING)
_held: list[list[int]] = []  # the signals caught by each deferred() block in progress, innermost last


@contextlib.contextmanager
def _installed(handlers: Mapping[signal.Signals, Handler]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, action) for sig, action in handlers.items()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _leave_to_the_session(_signum: int, _frame: FrameType | None) -> None:
    return  # Ctrl-C in an interactive ssh session belongs to the remote shell


def as_errors(*, interrupt: bool = True) -> contextlib.AbstractContextManager[None]:
    """SIGINT (unless `interrupt` is off: an interactive session), SIGTERM and SIGHUP raise Interrupted."""
    return _installed(
        {sig: _raise for sig in STOPPING} | {signal.SIGINT: _raise if interrupt else _leave_to_the_session}
    )


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While a task is being created: a signal is held, then raised right after the block, once the
    new task is known and can be stopped."""
    caught: list[int] = []
    _held.append(caught)
    try:
        with _installed({sig: lambda signum, _frame: caught.append(signum) for sig in ALL}):
            yield
    finally:
        _held.remove(caught)
    if caught:
        raise Interrupted(caught[0])


def pause(seconds: float) -> None:
    """A wait inside deferred() at a point where no request is on its way (between retries): a signal
    held so far, or one that comes during the wait, raises Interrupted here rather than at the end
    of the block, so that a long retry loop never holds Ctrl-C off."""
    deadline = time.monotonic() + seconds
    while True:
        if _held and _held[-1]:
            raise Interrupted(_held[-1][0])
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def ignored() -> contextlib.AbstractContextManager[None]:
    """While a task is being stopped: a second Ctrl-C must not leave it running."""
    return _installed(dict.fromkeys(ALL, signal.SIG_IGN))


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only when a child is started: `qimg --help` stays fast

    found: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return found


def dies_with_qimg() -> Callable[[], None] | None:
    """The `preexec_fn` of a child that must not outlive qimg (ssh holding a tunnel or a session, scp):
    on Linux it gets SIGTERM when qimg ends, even by `kill -9` that leaves no clean-up to run. The
    signal follows the thread that started the child: start it from one that waits for it. None
    elsewhere (no such call: the clean-up on the way out is all there is)."""
    prctl, parent = _prctl(), os.getpid()
    if prctl is None:
        return None

    def tie() -> None:  # in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # qimg ended before the call: no signal would come
            os.kill(os.getpid(), signal.SIGTERM)

    return tie
