"""Tasks by name: which backend runs them, their records, and the day-to-day verbs on them (list,
output, stop). The backends' libraries (docker, qarnot and boto3) are imported only when one is opened.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from qimg.errors import (
    BackendError,
    FileError,
    Interrupted,
    QimgError,
    ResultsUploading,
    TaskNotFound,
    UsageError,
)
from qimg.launcher import launch, records, signals, sshconfig
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import Backend, TaskView
from qimg.launcher.records import TaskRecord


def backend_name(local: bool) -> str:
    return "local" if local else "qarnot"


def find_task(backend: Backend, name: str) -> TaskView:
    matches = [task for task in backend.tasks() if task.name == name]
    if not matches:
        raise TaskNotFound(f"no task named {name} on {backend.name}: `qimg ls` lists them")
    return max(matches, key=lambda task: task.created or datetime.min)


@dataclass(frozen=True)
class NamedTask:
    """A task found by name: its record (if this machine launched it), its backend, and its id."""

    record: TaskRecord | None
    backend: Backend
    task_id: str


def resolve(name: str, local: bool) -> NamedTask:
    records.check_task_name(name)
    record = records.load(name)
    backend = registry.open_backend(record.backend if record else backend_name(local))
    if record is not None and not record.task_id:
        raise TaskNotFound(
            f"task {name} was being created when its launch stopped: `qimg stop {name}` stops what exists"
        )
    return NamedTask(record, backend, record.task_id if record else find_task(backend, name).id)


def login_record(name: str, local: bool) -> tuple[TaskRecord, Backend]:
    """The record to log in with, its instances followed to where they run now."""
    found = resolve(name, local)
    if found.record is None:
        raise UsageError(
            f"task {name} was not launched from this machine: no pinned host key or identity for it"
        )
    try:
        return launch.refresh(found.backend, found.record), found.backend
    except TaskNotFound:  # deleted elsewhere, or by a stop cut short: its record and entries are stale
        sshconfig.forget(name)
        raise TaskNotFound(
            f"task {name} no longer exists on {found.backend.name}: its record is dropped"
        ) from None


def claim_name(pending: TaskRecord, backend: Backend) -> list[str]:
    """Take the name for a new launch by writing its record first (atomically: of two launches of one
    name, one wins). A record left by an earlier task is dropped if that task is over; a live one, or
    one still being created, keeps its name. Callers hold `records.launching(name)`. Returns the
    problems met (broken records set aside), for the user."""
    name = pending.name
    problems: list[str] = []
    try:
        record = records.load(name)
    except records.BrokenRecord as broken:
        record = None  # set aside by load(); its tasks, if any, are still listed by `qimg ls`
        problems.append(str(broken))
    if record is not None:
        if _alive(record, backend):
            raise UsageError(
                f"--name {name}: a task of that name is running: `qimg stop {name}`, or choose another"
            )
        problems += sshconfig.forget(name)
    if not records.claim(pending):
        raise UsageError(f"--name {name}: another qimg took that name just now: choose another")
    return problems


def _alive(record: TaskRecord, backend: Backend) -> bool:
    owner = backend if record.backend == backend.name else registry.open_backend(record.backend)
    if not record.task_id:  # its launch died before the task id was known: its tag finds the tasks
        return any(not view.ended for view in owner.launched(record.launch_id))
    try:
        return not owner.view(record.task_id).ended
    except TaskNotFound:
        return False


# `ls` reads the running tasks' outputs at once (each is a request): reads of different tasks, over
# the backend's HTTP session, whose connection pool is made for threads.
OUTPUT_READS_AT_ONCE = 8
# What the idle watcher of each instance (images/qimg-idle.sh) prints, in the task's output.
_IDLE_LINE = re.compile(r"(?:(\d+)> )?qimg-idle: (?:stop-at (\d{1,10})\b|(in-use)\b|(no ssh session)\b)")


@dataclass(frozen=True)
class IdleStop:
    """When a task launched with --idle-stop stops by itself, as its instances' watchers last said:
    not while an ssh session is open on one of them, else at `stop_at` (the last instance's) unless
    someone logs in before."""

    session_open: bool
    stop_at: datetime | None

    def seconds_left(self, now: datetime) -> int | None:
        return None if self.stop_at is None else max(0, int((self.stop_at - now).total_seconds()))

    def as_dict(self, now: datetime) -> dict[str, object]:
        return {
            "session_open": self.session_open, "seconds_left": self.seconds_left(now),
            "stop_at": self.stop_at.isoformat() if self.stop_at else None,
        }  # fmt: skip


def idle_stop_in(output: str) -> IdleStop | None:
    """What the watchers' lines in a task's output (every instance, lines prefixed "N> ") say; None
    when they say nothing: no --idle-stop, an image without the watcher, lines gone from the buffer."""
    last: dict[int, tuple[bool, int]] = {}  # instance -> (a session is open, stop-at epoch)
    for line in output.splitlines():
        match = _IDLE_LINE.match(line)
        if match is None:
            continue
        index = int(match.group(1) or 0)
        if match.group(2):
            last[index] = (False, int(match.group(2)))
        elif match.group(3):
            last[index] = (True, 0)
        else:
            last.pop(index, None)  # this instance stopped; a restart of it prints again
    if not last:
        return None
    if any(session_open for session_open, _ in last.values()):
        return IdleStop(True, None)
    return IdleStop(False, datetime.fromtimestamp(max(at for _, at in last.values()), timezone.utc))


@dataclass(frozen=True)
class Listing:
    backend: str
    tasks: list[TaskView]  # oldest first
    idle_stops: dict[str, IdleStop]  # by task id, for the running tasks whose output tells one


def list_tasks(local: bool) -> Listing:
    """The backend's qimg tasks, and the idle stops of the running ones launched with --idle-stop: one
    output read for each, all at once, none for the others (they have nothing to tell)."""
    backend = registry.open_backend(backend_name(local))
    found = sorted(backend.tasks(), key=lambda task: task.created or datetime.max)
    running = [task.id for task in found if task.running and not task.ended and task.watches_idle]

    def idle_stop(task_id: str) -> IdleStop | None:
        try:
            return idle_stop_in(backend.output(task_id))
        except (QimgError, OSError):  # gone meanwhile, or no output came (OSError: the engine's and the
            return None  # HTTP libraries' errors): the listing goes on without it

    if not running:
        return Listing(backend.name, found, {})
    with ThreadPoolExecutor(min(len(running), OUTPUT_READS_AT_ONCE), thread_name_prefix="qimg-ls") as pool:
        stops = dict(zip(running, pool.map(idle_stop, running), strict=True))
    return Listing(backend.name, found, {task_id: stop for task_id, stop in stops.items() if stop})


def stop(
    name: str | None, local: bool, before: Callable[[Backend, str, str], None] | None = None
) -> tuple[str, list[tuple[str, str]], list[str]]:
    """Abort and delete one task, or every qimg task of the backend (name None); drop their records.
    A task already gone counts as stopped; one that fails does not stop the others: all are tried,
    then the failures are raised together. A record that cannot be dropped does not keep a task
    running: the FileError comes after the stops. `before(backend, name, id)` runs before each task
    is deleted (its results are saved there). Returns the backend's name, each (name, id) stopped,
    and the problems met on the way (broken records set aside)."""
    problems: list[str] = []
    stopped: list[tuple[str, str]] = []
    failures: list[str] = []
    # SIGINT, SIGTERM, SIGHUP end the command as they end others (Interrupted, from cli.main), but
    # never in the middle of a deletion, and the tasks stopped until then lose their records. The
    # tasks after an interrupted one are left as they are: `qimg stop` again reaches them.
    if name:
        found = resolve_for_stop(name, local)
        backend, targets = found.backend, [(name, task_id) for task_id in found.ids]
        problems += found.problems
    else:
        backend = registry.open_backend(backend_name(local))
        targets = [(task.name, task.id) for task in backend.tasks()]
    try:
        for task_name, task_id in targets:
            interrupted: Interrupted | None = None
            if before is not None:
                try:
                    before(backend, task_name, task_id)
                except Interrupted as interruption:  # it cut the saving of results short: the stop is due
                    interrupted = interruption
                except ResultsUploading as error:  # deleting it now could lose its results
                    failures.append(f"{task_name} ({task_id}): {error} (`qimg stop {task_name}` later)")
                    if error.interrupted is not None:
                        raise error.interrupted from None
                    continue
                except QimgError as error:
                    failures.append(f"{task_name} ({task_id}): {error}")
                    continue
            with signals.deferred():
                failure = _stop_one(backend, task_id)
                if failure is None:
                    stopped.append((task_name, task_id))
                else:
                    failures.append(f"{task_name} ({task_id}): {failure}")
            if interrupted is not None:
                raise interrupted
    finally:
        problems += _forget_stopped(stopped)
    if not name:  # every qimg task there is stopped: the records of none of them are stale
        problems += _drop_stale(backend)
    if failures:
        raise BackendError(f"could not stop {len(failures)} of {len(targets)} tasks: {'; '.join(failures)}")
    return backend.name, stopped, problems


@dataclass(frozen=True)
class StopTargets:
    backend: Backend
    ids: list[str]
    problems: list[str]  # the task's record, broken and set aside


def resolve_for_stop(name: str, local: bool) -> StopTargets:
    """The tasks `qimg stop NAME` stops: the record's task and every other task of its launch (a
    record whose launch died before the task id came back has only its launch's tag)."""
    records.check_task_name(name)
    problems: list[str] = []
    try:
        record = records.load(name)
    except (records.BrokenRecord, FileError) as error:  # the backend's listing still finds the task
        record = None
        problems.append(str(error))
    if record is None:
        backend = registry.open_backend(backend_name(local))
        return StopTargets(backend, [find_task(backend, name).id], problems)
    backend = registry.open_backend(record.backend)
    ids = [record.task_id] if record.task_id else []
    if record.launch_id:
        ids += [view.id for view in backend.launched(record.launch_id) if view.id not in ids]
    if not ids:
        sshconfig.forget(name)  # nothing of it exists any more
        raise TaskNotFound(f"task {name} no longer exists on {backend.name}: its record is dropped")
    return StopTargets(backend, ids, problems)


def _stop_one(backend: Backend, task_id: str) -> QimgError | None:
    try:
        backend.stop(task_id)
    except QimgError as error:
        return error
    return None


def _forget_stopped(stopped: list[tuple[str, str]]) -> list[str]:
    """Drop the records of the tasks stopped (a task listed under a name qimg never gives has none)."""
    try:
        return [
            problem
            for task_name in dict.fromkeys(
                task_name for task_name, _ in stopped if records.is_task_name(task_name)
            )
            for problem in _forget_if_stopped(task_name, {task_id for _, task_id in stopped})
        ]
    except FileError as error:
        done = ", ".join(f"{task_name} ({task_id})" for task_name, task_id in stopped)
        raise FileError(f"stopped {done}, but qimg cannot update its records: {error}") from None


def _drop_stale(backend: Backend) -> list[str]:
    """After `stop --all`: drop the records of this backend whose tasks are gone or over (a launch
    or a stop that was cut short left them, with their Host entries). A record whose launch is
    running (its lock held) is left to it. Returns one line per record dropped, and the problems met."""
    found, lines = records.all_records()
    for record in found:
        if record.backend != backend.name:
            continue
        try:
            with records.launching(record.name):
                if _alive(record, backend):
                    continue
                lines += sshconfig.forget(record.name)
        except UsageError:  # another qimg is launching it
            continue
        except QimgError as error:  # its state could not be asked, or the record not dropped: kept
            lines.append(f"the record of task {record.name} is kept: {error}")
            continue
        lines.append(f"dropped the record of task {record.name}: its task no longer runs")
    return lines


def _forget_if_stopped(name: str, stopped_ids: set[str]) -> list[str]:
    """Drop the record of `name` if it is of a task just stopped. Returns the problems met."""
    try:
        record = records.load(name)
    except records.BrokenRecord as broken:  # set aside: nothing left to drop
        return [str(broken)]
    if record is not None and (record.task_id in stopped_ids or not record.task_id):
        return sshconfig.forget(name)
    return []


def follow_output(name: str, local: bool, follow: bool, write: Callable[[str, bool], None]) -> None:
    """The task's output (stdout, then stderr) to `write(text, is_stderr)`; with `follow`, what comes
    next too, until the task ends. Read without consuming it (Qarnot's "fresh" output is consumed by
    whoever asks first), so `logs` shows the same text every time."""
    found = resolve(name, local)
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
