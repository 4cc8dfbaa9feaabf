"""What SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal went away) do while a task exists.

Python's default turns only SIGINT into an exception; SIGTERM and SIGHUP would end qimg at once and
leave the task running and billed. Here each of them raises `Interrupted`, so that every clean-up on
the way out runs. Handlers, unlike SIG_IGN, are not inherited by child processes (ssh).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType

from qimg.errors import Interrupted

Handler = Callable[[int, FrameType | None], None] | int
STOPPING = (signal.SIGTERM, signal.SIGHUP)
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
