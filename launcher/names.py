"""Tasks by name: the one way to find the task a command names (its record first, else its
backend's listing), the record to log in with, and a name taken for a new launch.

One policy for a record that cannot be read (`read_record`): it is set aside (by `records.load`)
and said once; a command that needs it (logging in: its pinned keys and identity) fails with it,
any other goes on and finds the task in the backend's listing, as one this machine has no record of.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qimg import notices
from qimg.errors import FileError, TaskNotFound, UsageError
from qimg.launcher import launch, records, sshconfig
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import Backend, TaskView
from qimg.launcher.records import TaskRecord


def read_record(name: str, *, needed: bool = False) -> TaskRecord | None:
    """The record of task `name` (None: this machine has none). One that cannot be read is raised
    when `needed`, else said (notices) and taken as none."""
    records.check_task_name(name)
    try:
        return records.load(name)
    except (records.BrokenRecord, FileError) as error:
        if needed:
            raise
        notices.warn(str(error))
        return None


def find_task(backend: Backend, name: str) -> TaskView:
    matches = [task for task in backend.tasks() if task.name == name]
    if not matches:
        raise TaskNotFound(f"no task named {name} on {backend.name}: `qimg ls` lists them")
    return max(matches, key=lambda task: task.created or datetime.min)


@dataclass(frozen=True)
class NamedTask:
    """A task found by name: its record (if this machine launched it), its backend (opened: the one
    connection of the command), and its id ("" for a record whose launch stopped before the task's id
    came back: its launch's tag finds what exists)."""

    name: str
    record: TaskRecord | None
    backend: Backend
    task_id: str


def resolve(name: str, backend: str, *, record_needed: bool = False, unfinished: bool = False) -> NamedTask:
    """The task `name`: its record's backend and id, else the newest task of that name on `backend`
    (a registered name). `record_needed`: a record that cannot be read is the error. A record of a
    launch that stopped while creating its task is refused unless `unfinished` (`qimg stop`)."""
    record = read_record(name, needed=record_needed)
    opened = registry.open_backend(record.backend if record else backend)
    if record is None:
        return NamedTask(name, None, opened, find_task(opened, name).id)
    if not record.task_id and not unfinished:
        raise TaskNotFound(
            f"task {name} was being created when its launch stopped: `qimg stop {name}` stops what exists"
        )
    return NamedTask(name, record, opened, record.task_id)


@dataclass(frozen=True)
class LoginTarget:
    """A task to log into: its record, its instances followed to where they run now, and its backend
    (opened: the one connection of the command, which `qimg tunnel` asks again when its link drops)."""

    record: TaskRecord
    backend: Backend


def login(name: str, backend: str) -> LoginTarget:
    """The task `name` to log into: it needs its record (pinned keys, identity), so a record that
    cannot be read is the error, and a task this machine did not launch is refused."""
    found = resolve(name, backend, record_needed=True)
    if found.record is None:
        raise UsageError(
            f"task {name} was not launched from this machine: no pinned host key or identity for it"
        )
    try:
        return LoginTarget(launch.refresh(found.backend, found.record), found.backend)
    except TaskNotFound:  # deleted elsewhere, or by a stop cut short: its record and entries are stale
        sshconfig.forget(name)
        raise TaskNotFound(
            f"task {name} no longer exists on {found.backend.name}: its record is dropped"
        ) from None


def claim_name(pending: TaskRecord, backend: Backend) -> None:
    """Take the name for a new launch by writing its record first (atomically: of two launches of one
    name, one wins). A record left by an earlier task is dropped if that task is over; a live one, or
    one still being created, keeps its name. Callers hold `records.launching(name)`."""
    name = pending.name
    record = read_record(name)  # a broken one is set aside: its tasks, if any, are still listed by `qimg ls`
    if record is not None:
        if alive(record, backend):
            raise UsageError(
                f"--name {name}: a task of that name is running: `qimg stop {name}`, or choose another"
            )
        sshconfig.forget(name)
    if not records.claim(pending):
        raise UsageError(f"--name {name}: another qimg took that name just now: choose another")


def alive(record: TaskRecord, backend: Backend) -> bool:
    """The record's task, or one of its launch, still runs (asked of `backend` when the record is of it)."""
    owner = backend if record.backend == backend.name else registry.open_backend(record.backend)
    if not record.task_id:  # its launch died before the task id was known: its tag finds the tasks
        return any(not view.ended for view in owner.launched(record.launch_id))
    try:
        return not owner.view(record.task_id).ended
    except TaskNotFound:
        return False
