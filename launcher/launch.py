"""The launch core, written once above the backends (Qarnot, local): wait until every instance of a
submitted task accepts a real ssh login, pin the host keys it printed, follow instances that move,
and stop a task on the way out of a failure.

Readiness: the backend is polled (adaptively), and each instance whose forward of port 22 has no pin
yet gets one login attempt per round: the `SSH-` banner, the host keys from its own output, then
`ssh ... true` against exactly those keys.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from qimg.errors import LaunchFailed, QimgError
from qimg.launcher import signals, sshconfig
from qimg.launcher.backends.base import EXECUTING, Backend, InstanceView, TaskView
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import host_keys_in, try_login

# Polling: fast at first, then backing off to a cap; fast again whenever the task makes progress,
# and kept fast while it executes without all its forwards (they come within seconds).
API_FIRST_PAUSE, API_GROWTH, API_MAX_PAUSE, API_FORWARD_PAUSE = 0.25, 1.6, 3.0, 0.5
PROBE_FIRST_PAUSE, PROBE_MAX_PAUSE = 0.05, 1.0

StatusCallback = Callable[[TaskView, float], None]
HostKeyReaders = dict[tuple[int, int], Callable[[], list[str]]]


def wait_ready(
    backend: Backend,
    task_id: str,
    user: str,
    identity: Path,
    deadline: float,
    on_status: StatusCallback | None = None,
    entries: tuple[int, ...] | None = None,
) -> list[InstanceRecord]:
    """Every instance pinned, in order (only `entries` are waited for: a cluster's workers have no
    forward); LaunchFailed when the task ends or the deadline passes."""
    started = time.monotonic()
    api_pause, probe_pause = API_FIRST_PAUSE, PROBE_FIRST_PAUSE
    next_poll = 0.0
    pinned: dict[int, InstanceRecord] = {}
    readers: HostKeyReaders = {}
    last_error, last_state = "the task has not started yet", ""
    view: TaskView | None = None
    with tempfile.TemporaryDirectory(prefix="qimg-wait-") as tmp:
        while True:
            now = time.monotonic()
            if view is None or now >= next_poll:
                view = backend.view(task_id)
                if view.state != last_state or view.running != len(pinned):
                    api_pause = API_FIRST_PAUSE  # progress: the forwards are near, look again soon
                last_state = view.state
                next_poll = now + api_pause
                waiting_for_forwards = view.state == EXECUTING and view.running < view.instance_count
                api_pause = min(
                    api_pause * API_GROWTH, API_FORWARD_PAUSE if waiting_for_forwards else API_MAX_PAUSE
                )
                if on_status:
                    on_status(view, now - started)
                if view.ended:
                    raise task_failure(backend, view, f"task {view.state.lower()} before ssh was ready")
            if view.state == EXECUTING:
                errors = pin_moved(backend, view, user, identity, Path(tmp), pinned, readers)
                last_error = errors[-1] if errors else last_error
            if len(view.instances) == view.instance_count and not any(
                _moved(instance, pinned.get(instance.index))
                for instance in view.instances
                if entries is None or instance.index in entries
            ):
                return [pinned[index] for index in sorted(pinned)]
            if time.monotonic() >= deadline:
                raise task_failure(
                    backend, view, f"not ready within the deadline ({view.state}, "
                    f"{len(pinned)}/{view.instance_count} instances ready): {last_error}",
                )  # fmt: skip
            time.sleep(max(0.0, min(probe_pause, next_poll - time.monotonic())))
            probe_pause = min(probe_pause * 1.5, PROBE_MAX_PAUSE)


def pin_moved(
    backend: Backend, view: TaskView, user: str, identity: Path, workdir: Path,
    pinned: dict[int, InstanceRecord], readers: HostKeyReaders,
) -> list[str]:  # fmt: skip
    """One login attempt at every running instance that has no pin at its current forward; `pinned`
    gets the ones that worked. Returns what went wrong with the others."""
    errors = []
    for instance in view.instances:
        forward = instance.forward
        previous = pinned.get(instance.index)
        if forward is None or not _moved(instance, previous):
            continue
        stale = previous.host_keys if previous else []
        reader = readers.setdefault(
            (instance.index, forward.port), host_key_reader(backend, view.id, instance.index, stale)
        )
        known_hosts = workdir / f"known_hosts-{instance.index}"
        keys, error = try_login(forward, user, identity, known_hosts, reader)
        if keys:
            pinned[instance.index] = InstanceRecord(instance.index, forward, keys, instance.attempt)
        else:
            # The output lags: the keys read may be those of a start that is over. Read it again.
            readers.pop((instance.index, forward.port))
            errors.append(f"instance {instance.index}: {error}")
    return errors


def _moved(instance: InstanceView, pinned: InstanceRecord | None) -> bool:
    """True while the instance has no pinned login at its current forward (none yet, or restarted)."""
    return instance.forward is None or pinned is None or pinned.endpoint != instance.forward


def host_key_reader(backend: Backend, task_id: str, index: int, stale: list[str]) -> Callable[[], list[str]]:
    """The host keys the instance printed at its latest start: its output is read until they are
    there, then never again. Keys of an earlier start (`stale`) do not count."""
    found: list[str] = []

    def read() -> list[str]:
        if not found:
            keys = host_keys_in(backend.output(task_id, index))
            found.extend(keys if keys != stale else [])
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
    with tempfile.TemporaryDirectory(prefix="qimg-refresh-") as tmp:
        while True:
            view = backend.view(record.task_id)
            if view.ended:
                raise LaunchFailed(f"task {record.name} is {view.state}: `qimg logs {record.name}` says why")
            errors = pin_moved(backend, view, record.user, record.identity, Path(tmp), pinned, {})
            if not errors:
                break
            if time.monotonic() >= deadline:
                raise LaunchFailed(f"{record.name} moved and is not ready: {errors[0]}")
            time.sleep(0.5)
    if pinned != before:
        record.instances = [pinned[index] for index in sorted(pinned)]
        sshconfig.save(record)
    return record
