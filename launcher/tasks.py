"""Tasks by name: which backend runs them, their records, and the day-to-day verbs on them (list,
output, stop). The backends' libraries (docker, qarnot and boto3) are imported only when one is opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from qimg.errors import TaskNotFound, UsageError
from qimg.launcher import launch, records, sshconfig
from qimg.launcher.backends.base import Backend, TaskView
from qimg.launcher.records import TaskRecord

if TYPE_CHECKING:
    import docker


def backend_name(local: bool) -> str:
    return "local" if local else "qarnot"


def open_backend(name: str, client: docker.DockerClient | None = None) -> Backend:
    """The backend called `name`: qarnot (needs a token) or local (the Docker engine, `client` if given)."""
    if name == "local":
        from qimg import engine
        from qimg.launcher.backends.local import LocalBackend

        return LocalBackend(client or engine.client())
    from qimg.launcher.backends.qarnot import QarnotBackend

    return QarnotBackend()


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
    backend = open_backend(record.backend if record else backend_name(local))
    return NamedTask(record, backend, record.task_id if record else find_task(backend, name).id)


def login_record(name: str, local: bool) -> tuple[TaskRecord, Backend]:
    """The record to log in with, its instances followed to where they run now."""
    found = resolve(name, local)
    if found.record is None:
        raise UsageError(
            f"task {name} was not launched from this machine: no pinned host key or identity for it"
        )
    return launch.refresh(found.backend, found.record), found.backend


def refuse_name_in_use(name: str, backend: Backend) -> None:
    """A new task may take the name of one that ended (its record is dropped), not of a live one."""
    record = records.load(name)
    if record is None:
        return
    owner = backend if record.backend == backend.name else open_backend(record.backend)
    try:
        alive = not owner.view(record.task_id).ended
    except TaskNotFound:
        alive = False
    if alive:
        raise UsageError(
            f"--name {name}: a task of that name is running: `qimg stop {name}`, or choose another"
        )
    sshconfig.forget(name)


def list_tasks(local: bool) -> tuple[str, list[TaskView]]:
    """The backend's name and its qimg tasks, oldest first."""
    backend = open_backend(backend_name(local))
    return backend.name, sorted(backend.tasks(), key=lambda task: task.created or datetime.max)


def stop(name: str | None, local: bool) -> tuple[str, list[tuple[str, str]]]:
    """Abort and delete one task, or every qimg task of the backend (name None); drop their records.
    Returns the backend's name and the (name, id) of each task stopped."""
    if name:
        found = resolve(name, local)
        backend, targets = found.backend, [(name, found.task_id)]
    else:
        backend = open_backend(backend_name(local))
        targets = [(task.name, task.id) for task in backend.tasks()]
    for task_name, task_id in targets:
        backend.stop(task_id)
        record = records.load(task_name)
        if record is not None and record.task_id == task_id:
            sshconfig.forget(task_name)
    return backend.name, targets


def follow_output(name: str, local: bool, follow: bool, write: Callable[[str, bool], None]) -> None:
    """The task's output (stdout, then stderr) to `write(text, is_stderr)`; with `follow`, until it ends."""
    found = resolve(name, local)
    try:
        while True:
            write(found.backend.new_output(found.task_id), False)
            write(found.backend.new_output(found.task_id, stderr=True), True)
            if not follow or found.backend.view(found.task_id).ended:
                return
            time.sleep(1)
    except (KeyboardInterrupt, TaskNotFound):  # Ctrl-C, or the task was stopped meanwhile
        return
