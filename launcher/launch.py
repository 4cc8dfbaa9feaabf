"""The launch core, written once above the backends (Qarnot, local): wait until every instance of a
submitted task accepts a real ssh login, pin the host keys it printed, follow instances that move,
and stop a task on the way out of a failure.

Readiness: the backend is polled (adaptively), and each instance whose forward of port 22 has no pin
yet gets login attempts, each instance in its own thread and on its own clock: the `SSH-` banner,
the host keys from its own output, then `ssh ... true` against exactly those keys.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qimg.errors import LaunchFailed, QimgError
from qimg.launcher import signals, sshconfig
from qimg.launcher.backends.base import EXECUTING, QUEUED_STATES, Backend, InstanceView, TaskView
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint, host_keys_in, try_login

# Polling the backend: fast at first, backing off to a cap, fast again whenever the task makes
# progress, and never faster than the backend's request budget allows (`poll_not_before`). Once it
# executes, at a steady pace: a forward is seen at most API_FORWARD_PAUSE (or the budget's pace, if
# slower: 0.56 s on Qarnot) after it appears, and the login that follows (about 0.3 s) ends within a
# second of it; with every forward there, the polls only watch for an instance that moves or a task
# that ends, and back off again.
API_FIRST_PAUSE, API_GROWTH, API_MAX_PAUSE, API_FORWARD_PAUSE = 0.25, 1.6, 3.0, 0.55
# A failed attempt (sshd not answering yet) is tried again soon, then less and less often: every
# PROBE_FAST_PAUSE in the first PROBE_FAST_SECONDS. An attempt that finds no sshd is one connection,
# no process, and a local sshd starts within a second: a 50 ms loop, as a script would retry, finds
# it 25 ms late on average, this one 10 ms.
PROBE_FIRST_PAUSE, PROBE_GROWTH, PROBE_MAX_PAUSE = 0.02, 1.5, 1.0
PROBE_FAST_PAUSE, PROBE_FAST_SECONDS = 0.02, 3.0
PARALLEL_LOGINS = 16  # login attempts at once: each is an ssh process

StatusCallback = Callable[[TaskView, float], None]
HostKeyReaders = dict[tuple[int, int], Callable[[], list[str]]]


@dataclass(frozen=True)
class Readiness:
    """What the wait for a launch needs, as its plan made it: who logs in with which key, the two
    clocks, and what the request asked for. The task may stay queued `queue_timeout` seconds (None:
    `timeout`), and once it left the queue it has `timeout` seconds to be ready; a long queue never
    eats the time given to the start. Only `entries` are logged into (None: all; a cluster's workers
    have no forward). `instances`, the request's count: a task the backend describes with another
    count lost instances (or is not the one launched), and is never ready on what is left."""

    user: str
    identity: Path
    timeout: float
    queue_timeout: float | None = None
    entries: tuple[int, ...] | None = None
    instances: int | None = None

    @property
    def queue_bound(self) -> float:
        return self.timeout if self.queue_timeout is None else self.queue_timeout


def wait_ready(
    backend: Backend,
    task_id: str,
    wait: Readiness,
    on_status: StatusCallback | None = None,
    ssh_options: tuple[str, ...] = (),
) -> list[InstanceRecord]:
    """Every instance pinned, in order; LaunchFailed when the task ends or a bound of `wait` passes.
    `ssh_options` go to the logins that prove readiness (the session keeps them open to reuse)."""
    user, identity, timeout, entries = wait.user, wait.identity, wait.timeout, wait.entries
    started = time.monotonic()
    queued_until = started + wait.queue_bound
    deadline: float | None = None  # set when the task leaves the queue
    api_pause, next_poll = API_FIRST_PAUSE, 0.0
    pinned: dict[int, InstanceRecord] = {}
    view: TaskView | None = None
    with (
        tempfile.TemporaryDirectory(prefix="qimg-wait-") as tmp,
        _Logins(backend, task_id, user, identity, Path(tmp), ssh_options) as logins,
    ):
        while True:
            now = time.monotonic()
            if view is None or now >= next_poll:
                with logins.backend_lock:
                    previous, view = view, backend.view(task_id)
                polled_at = now
                if previous is None or (view.state, view.running) != (previous.state, previous.running):
                    api_pause = API_FORWARD_PAUSE if view.state == EXECUTING else API_FIRST_PAUSE
                    logins.hurry()  # progress: the instances that did not answer are tried again now
                if view.state == EXECUTING and view.running < view.instance_count:
                    api_pause = API_FORWARD_PAUSE
                next_poll = max(now + api_pause, backend.poll_not_before())
                api_pause = min(api_pause * API_GROWTH, API_MAX_PAUSE)
                if deadline is None and view.state not in QUEUED_STATES:
                    deadline = now + timeout
                if on_status:
                    on_status(view, now - started)
                if view.ended:
                    raise logins.failure(view, f"task {view.state.lower()} before ssh was ready")
                if wait.instances is not None and view.instance_count != wait.instances:
                    raise logins.failure(
                        view, f"the task has {view.instance_count} instances, {wait.instances} were launched"
                    )
            if view.state == EXECUTING:
                logins.start(view, pinned)
            logins.collect(pinned)
            if len(view.instances) == view.instance_count and not any(
                _moved(instance, pinned.get(instance.index))
                for instance in view.instances
                if entries is None or instance.index in entries
            ):
                return [pinned[index] for index in sorted(pinned)]
            if deadline is None:  # queued: only a read made after the bound says it still is
                if polled_at >= queued_until:
                    raise logins.failure(
                        view, f"still queued after {queued_until - started:g} s ({view.state})"
                    )
                logins.wait(next_poll)
                continue
            if time.monotonic() >= deadline:
                raise logins.failure(
                    view, f"not ready within {timeout:g} s of leaving the queue ({view.state}, "
                    f"{len(pinned)}/{view.instance_count} instances ready): {logins.last_error}",
                )  # fmt: skip
            logins.wait(min(next_poll, deadline))


# Over, but a batch task's outcome (Success, Failure, Cancelled) is not known yet in these.
SETTLING_STATES = frozenset({"UploadingResults", "DownloadingResults", "PendingCancel"})


def wait_end(
    backend: Backend, task_id: str, wait: Readiness, on_status: StatusCallback | None = None
) -> TaskView:
    """The view of a batch task (its command is the task) once it is over. Its queue is bounded as
    wait_ready bounds it; its run by its own deadline (--max-time, enforced inside the task)."""
    queue_timeout = wait.queue_bound
    started = time.monotonic()
    pause = API_FIRST_PAUSE
    while True:
        now = time.monotonic()
        view = backend.view(task_id)
        if on_status:
            on_status(view, now - started)
        if view.ended and view.state not in SETTLING_STATES:
            return view
        if view.state in QUEUED_STATES and now - started >= queue_timeout:
            raise task_failure(backend, view, f"still queued after {queue_timeout:g} s ({view.state})")
        time.sleep(max(pause, backend.poll_not_before() - time.monotonic()))
        pause = min(pause * API_GROWTH, API_MAX_PAUSE)


class _Logins:
    """Login attempts at the instances that have no pin at their current forward, each instance in
    its own thread and on its own clock: one that answers late neither waits for the others' logins
    nor holds them up. The attempts read the task's output from their threads while the loop polls
    the same task, whose backend object a poll updates: every backend call holds `backend_lock`."""

    def __init__(
        self, backend: Backend, task_id: str, user: str, identity: Path, workdir: Path,
        ssh_options: tuple[str, ...],
    ) -> None:  # fmt: skip
        self.backend, self.task_id, self.user, self.identity = backend, task_id, user, identity
        self.workdir, self.ssh_options = workdir, ssh_options
        self.backend_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(PARALLEL_LOGINS, thread_name_prefix="qimg-login")
        self.running: dict[int, tuple[InstanceView, Endpoint, Future[tuple[list[str], str]]]] = {}
        self.readers: HostKeyReaders = {}
        self.retry_at: dict[int, float] = {}  # after a failed attempt, the next waits until then
        self.pauses: dict[int, float] = {}
        self.first_failed: dict[int, float] = {}  # when the attempts since the last progress began
        self.last_error = "the task has not started yet"

    def __enter__(self) -> _Logins:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # On the way out of a failure, the task is stopped at once: attempts still running end by
        # themselves (their servers go away), they are not waited for.
        self.pool.shutdown(wait=kind is None, cancel_futures=True)

    def start(self, view: TaskView, pinned: dict[int, InstanceRecord]) -> None:
        """An attempt at every instance that needs one, has none running and no retry to wait for."""
        now = time.monotonic()
        for instance in view.instances:
            index, forward = instance.index, instance.forward
            if (
                forward is None or not _moved(instance, pinned.get(index)) or index in self.running
                or self.retry_at.get(index, 0.0) > now
            ):  # fmt: skip
                continue
            reader = self.readers.setdefault(
                (index, forward.port), host_key_reader(self.backend, self.task_id, index, self.backend_lock)
            )
            known_hosts = self.workdir / f"known_hosts-{index}"
            attempt = self.pool.submit(
                try_login, forward, self.user, self.identity, known_hosts, reader, self.ssh_options
            )
            self.running[index] = (instance, forward, attempt)

    def collect(self, pinned: dict[int, InstanceRecord]) -> list[str]:
        """The attempts that ended: `pinned` gets the ones that worked. Returns what went wrong with
        the others."""
        errors = []
        for index, (instance, forward, attempt) in list(self.running.items()):
            if not attempt.done():
                continue
            del self.running[index]
            keys, error = attempt.result()
            if keys:
                pinned[index] = InstanceRecord(
                    index=index, endpoint=forward, host_keys=keys, attempt=instance.attempt
                )
                self.retry_at.pop(index, None)
                self.pauses.pop(index, None)
                self.first_failed.pop(index, None)
                continue
            # The output lags: the keys read may be those of a start that is over. Read it again.
            self.readers.pop((index, forward.port), None)
            pause, now = self.pauses.get(index, PROBE_FIRST_PAUSE), time.monotonic()
            self.retry_at[index] = now + pause
            grown = min(pause * PROBE_GROWTH, PROBE_MAX_PAUSE)
            fast = now - self.first_failed.setdefault(index, now) < PROBE_FAST_SECONDS
            self.pauses[index] = min(grown, PROBE_FAST_PAUSE) if fast else grown
            errors.append(f"instance {index}: {error}")
        self.last_error = errors[-1] if errors else self.last_error
        return errors

    def hurry(self) -> None:
        """The task made progress: the instances that failed are tried again without waiting."""
        self.retry_at.clear()
        self.pauses.clear()
        self.first_failed.clear()

    def wait(self, until: float) -> None:
        """Until `until`, a retry is due or an attempt ends, whichever comes first."""
        now = time.monotonic()
        timeout = max(0.0, min([until, *(at for at in self.retry_at.values() if at > now)]) - now)
        attempts = [attempt for _, _, attempt in self.running.values()]
        if attempts:
            concurrent.futures.wait(attempts, timeout, return_when=FIRST_COMPLETED)
        else:
            time.sleep(timeout)

    def wait_all(self) -> None:
        concurrent.futures.wait([attempt for _, _, attempt in self.running.values()])

    def failure(self, view: TaskView, message: str) -> LaunchFailed:
        with self.backend_lock:
            return task_failure(self.backend, view, message)


def _moved(instance: InstanceView, pinned: InstanceRecord | None) -> bool:
    """True while the instance has no pinned login at its current forward (none yet, or restarted)."""
    return instance.forward is None or pinned is None or pinned.endpoint != instance.forward


def host_key_reader(
    backend: Backend, task_id: str, index: int, lock: threading.Lock
) -> Callable[[], list[str]]:
    """The host keys the instance printed at its latest start: its output is read (holding `lock`)
    until they are there, then never again. They may still be those of an earlier start (the output
    lags): then the login fails unless the server kept its key (a restarted container), and the
    caller reads again."""
    found: list[str] = []

    def read() -> list[str]:
        if not found:
            with lock:
                found.extend(host_keys_in(backend.output(task_id, index)))
        return found

    return read


def task_failure(backend: Backend, view: TaskView, message: str) -> LaunchFailed:
    details = [f"task error: {error}" for error in view.errors]
    with contextlib.suppress(QimgError):
        tail = (backend.output(view.id) + backend.output(view.id, stderr=True)).strip().splitlines()[-8:]
        details.extend(f"output: {line}" for line in tail)
    return LaunchFailed(message, tuple(details))


def stop_launch(backend: Backend, task_id: str, launch_id: str) -> list[str]:
    """Stop the task and every other task the launch created (found by its tag), on the way out: a
    second Ctrl-C cannot interrupt it. Returns one line per task for the user; raises nothing."""
    lines = []
    with signals.ignored():
        ids = [task_id] if task_id else []
        try:
            ids += (
                [view.id for view in backend.launched(launch_id) if view.id not in ids] if launch_id else []
            )
        except QimgError as error:
            lines.append(f"could not list the tasks of this launch: {error} (`qimg stop` retries)")
        for each in ids:
            try:
                backend.stop(each)
            except QimgError as error:
                lines.append(f"could not stop task {each}: {error} (stop it with `qimg stop`)")
            else:
                lines.append(f"task {each} stopped and deleted")
    return lines


REFRESH_SECONDS = 60.0  # how long a moved instance may take to answer with its new key


def refresh(backend: Backend, record: TaskRecord, wait: float = REFRESH_SECONDS) -> TaskRecord:
    """Follow instances that restarted elsewhere: new forward, new host key (checked by a login). The
    new key comes through the task's output, which lags: a moved instance is tried until `wait` passes."""
    pinned = {instance.index: instance for instance in record.instances}
    before = dict(pinned)
    deadline = time.monotonic() + wait
    with (
        tempfile.TemporaryDirectory(prefix="qimg-refresh-") as tmp,
        _Logins(backend, record.task_id, record.user, record.identity, Path(tmp), ()) as logins,
    ):
        while True:
            view = backend.view(record.task_id)
            if view.ended:
                raise LaunchFailed(f"task {record.name} is {view.state}: `qimg logs {record.name}` says why")
            logins.start(view, pinned)
            logins.wait_all()
            errors = logins.collect(pinned)
            if not errors:
                break
            if time.monotonic() >= deadline:
                raise LaunchFailed(f"{record.name} moved and is not ready: {errors[0]}")
            logins.hurry()
            time.sleep(0.5)
    if pinned != before:
        sshconfig.close_masters(record, [old for index, old in before.items() if pinned[index] != old])
        record.instances = [pinned[index] for index in sorted(pinned)]
        sshconfig.save(record)
    return record
