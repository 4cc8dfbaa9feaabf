"""The day-to-day verbs on the tasks of a backend: list them (with their idle stops) and stop them
(a deletion never cut by a signal; the records of tasks over dropped). Tasks are found by name in
`names`; the backends' libraries (docker, qarnot and boto3) are imported only when one is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from qimg import notices
from qimg.errors import (
    BackendError,
    FileError,
    Interrupted,
    QimgError,
    ResultsUploading,
    TaskNotFound,
    UsageError,
)
from qimg.launcher import names, records, signals, sshconfig
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import Backend, IdleStop, TaskView, idle_stop_in

# `ls` reads the running tasks' outputs at once (each is a request): reads of different tasks, over
# the backend's HTTP session, whose connection pool is made for threads.
OUTPUT_READS_AT_ONCE = 8


@dataclass(frozen=True)
class Listing:
    backend: str
    tasks: list[TaskView]  # oldest first
    idle_stops: dict[str, IdleStop]  # by task id, for the running tasks whose output tells one
    ports: dict[str, list[records.ForwardedPort]] = field(default_factory=dict)  # by task id: run's tunnels


def list_tasks(backend: str) -> Listing:
    """The qimg tasks of `backend` (a registered name), and the idle stops of the running ones
    launched with --idle-stop: one output read for each, all at once, none for the others (they
    have nothing to tell). The records are read too: a broken one is set aside, and said."""
    recorded, problems = records.all_records()
    for problem in problems:
        notices.warn(problem)
    opened = registry.open_backend(backend)
    found = sorted(opened.tasks(), key=lambda task: task.created or datetime.max)
    ports = {r.task_id: r.ports for r in recorded if r.backend == opened.name and r.task_id and r.ports}
    running = [task.id for task in found if task.running and not task.ended and task.watches_idle]

    def idle_stop(task_id: str) -> IdleStop | None:
        try:
            return idle_stop_in(opened.output(task_id))
        except (QimgError, OSError):  # gone meanwhile, or no output came (OSError: the engine's and the
            return None  # HTTP libraries' errors): the listing goes on without it

    if not running:
        return Listing(opened.name, found, {}, ports)
    with ThreadPoolExecutor(min(len(running), OUTPUT_READS_AT_ONCE), thread_name_prefix="qimg-ls") as pool:
        stops = dict(zip(running, pool.map(idle_stop, running), strict=True))
    return Listing(opened.name, found, {task_id: stop for task_id, stop in stops.items() if stop}, ports)


def stop(
    name: str | None, backend: str, before: Callable[[Backend, str, str], None] | None = None
) -> tuple[Backend, list[tuple[str, str]]]:
    """Abort and delete one task, or every qimg task of `backend` (name None); drop their records.
    A task already gone counts as stopped; one that fails does not stop the others: all are tried,
    then the failures are raised together. A record that cannot be dropped does not keep a task
    running: the FileError comes after the stops. `before(backend, name, id)` runs before each task
    is deleted (its results are saved there). Returns the backend, opened (`stop --purge` goes on
    with it), and each (name, id) stopped; what the user should know on the way (broken records set
    aside) goes to `notices`."""
    stopped: list[tuple[str, str]] = []
    failures: list[str] = []
    # SIGINT, SIGTERM, SIGHUP end the command as they end others (Interrupted, from cli.main), but
    # never in the middle of a deletion, and the tasks stopped until then lose their records. The
    # tasks after an interrupted one are left as they are: `qimg stop` again reaches them.
    if name:
        opened, task_ids = _launch_of(name, backend)
        targets = [(name, task_id) for task_id in task_ids]
    else:
        opened = registry.open_backend(backend)
        targets = [(task.name, task.id) for task in opened.tasks()]
    try:
        for task_name, task_id in targets:
            interrupted: Interrupted | None = None
            if before is not None:
                try:
                    before(opened, task_name, task_id)
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
                failure = _stop_one(opened, task_id)
                if failure is None:
                    stopped.append((task_name, task_id))
                else:
                    failures.append(f"{task_name} ({task_id}): {failure}")
            if interrupted is not None:
                raise interrupted
    finally:
        _forget_stopped(stopped)
    if not name:  # every qimg task there is stopped: the records of none of them are stale
        _drop_stale(opened)
    if failures:
        raise BackendError(f"could not stop {len(failures)} of {len(targets)} tasks: {'; '.join(failures)}")
    return opened, stopped


def _launch_of(name: str, backend: str) -> tuple[Backend, list[str]]:
    """What `qimg stop NAME` stops: the named task and every other task of its launch (a record whose
    launch died before the task id came back has only its launch's tag)."""
    found = names.resolve(name, backend, unfinished=True)
    ids = [found.task_id] if found.task_id else []
    if found.record is not None and found.record.launch_id:
        ids += [view.id for view in found.backend.launched(found.record.launch_id) if view.id not in ids]
    if not ids:
        sshconfig.forget(name)  # nothing of it exists any more
        raise TaskNotFound(f"task {name} no longer exists on {found.backend.name}: its record is dropped")
    return found.backend, ids


def _stop_one(backend: Backend, task_id: str) -> QimgError | None:
    try:
        backend.stop(task_id)
    except QimgError as error:
        return error
    return None


def _forget_stopped(stopped: list[tuple[str, str]]) -> None:
    """Drop the records of the tasks stopped (a task listed under a name qimg never gives has none)."""
    try:
        for task_name in dict.fromkeys(
            task_name for task_name, _ in stopped if records.is_task_name(task_name)
        ):
            _forget_if_stopped(task_name, {task_id for _, task_id in stopped})
    except FileError as error:
        done = ", ".join(f"{task_name} ({task_id})" for task_name, task_id in stopped)
        raise FileError(f"stopped {done}, but qimg cannot update its records: {error}") from None


def _drop_stale(backend: Backend) -> None:
    """After `stop --all`: drop the records of this backend whose tasks are gone or over (a launch
    or a stop that was cut short left them, with their Host entries). A record whose launch is
    running (its lock held) is left to it. Each record dropped or kept is said."""
    found, problems = records.all_records()
    for problem in problems:
        notices.warn(problem)
    for record in found:
        if record.backend != backend.name:
            continue
        try:
            with records.launching(record.name):
                if names.alive(record, backend):
                    continue
                sshconfig.forget(record.name)
        except UsageError:  # another qimg is launching it
            continue
        except QimgError as error:  # its state could not be asked, or the record not dropped: kept
            notices.warn(f"the record of task {record.name} is kept: {error}")
            continue
        notices.warn(f"dropped the record of task {record.name}: its task no longer runs")


def _forget_if_stopped(name: str, stopped_ids: set[str]) -> None:
    """Drop the record of `name` if it is of a task just stopped (FileError: the records' folder
    cannot be read)."""
    try:
        record = records.load(name)
    except records.BrokenRecord as broken:  # set aside: nothing left to drop
        notices.warn(str(broken))
        return
    if record is not None and (record.task_id in stopped_ids or not record.task_id):
        sshconfig.forget(name)
