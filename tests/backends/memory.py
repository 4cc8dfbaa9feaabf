"""A backend in memory, for the unit tests: `base.Backend` and `base.Storage` over one module-level
service (`SERVICE`), registered by name exactly as the real backends are
(`registry.register("memory", "tests.backends.memory:MemoryBackend", ...)`, the `memory` fixture of
tests/unit/conftest.py). It is the proof of ARCHITECTURE's worked example "a third backend": this
module, one registration line, and its tests (tests/unit/test_lifecycle.py).

Tasks move through Qarnot's states as they are looked at (`view`): Submitted while queued, then
FullyDispatched, then FullyExecuting, when each instance gets a forward of port 22 (to `forward_port`
on 127.0.0.1, where a test runs whatever should answer there) and prints its host keys in its output,
as qimg's start script does. Faults are injected per step: every call of the backend counts, and the
test chooses which call fails (`fail_at`), which call receives a real signal (`signal_at`), how a
creation ends (`creation`), and how the task behaves (queue, failure, end, results).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import BinaryIO

from qimg.errors import BackendError, CreatedButFailed, CreationUnresolved, TaskNotFound
from qimg.launcher.backends.base import (
    ENDED_STATES,
    EXECUTING,
    IDLE_STOP_CONSTANT,
    Backend,
    BucketView,
    BytesMoved,
    InstanceView,
    ObjectView,
    Storage,
    TaskRequest,
    TaskView,
)
from qimg.launcher.ssh import HOST_KEY_MARKER, Endpoint

# How a creation ends: the task made and its id returned; refused (a 429 the backend gave up on:
# nothing made); unclear (the task made, its reply lost, no listing settled it); unclear and nothing
# made; made, then a request completing it failed (the id is known).
CREATED, REFUSED, UNCLEAR, UNCLEAR_NOTHING, CREATED_BUT_FAILED = (
    "created", "refused", "unclear", "unclear-nothing", "created-but-failed",
)  # fmt: skip


@dataclass
class MemoryTask:
    id: str
    request: TaskRequest
    created: datetime
    state: str = "Submitted"
    looks: int = 0  # `view` calls so far: the task moves one step at each
    executing_looks: int = 0  # of them, while it executed (it printed its host keys then)
    errors: list[str] = field(default_factory=list)


@dataclass
class Service:
    """Where memory tasks run and their buckets live, shared by every MemoryBackend (as Qarnot's API is
    shared by every connection to it). Its fields are the test's knobs; `reset` restores them."""

    tasks: dict[str, MemoryTask] = field(default_factory=dict)
    buckets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (call, its argument), in order
    counts: dict[str, int] = field(default_factory=dict)  # calls so far, by name
    # The calls that raise BackendError, by name and number (1: the first call of that name).
    fail_at: dict[str, set[int]] = field(default_factory=dict)
    # A real signal sent to this process during a call: name -> (number, signal).
    signal_at: dict[str, tuple[int, int]] = field(default_factory=dict)
    creation: str = CREATED
    copies: int = 1  # tasks one creation makes (an unclear creation sent again makes a second one)
    queued_looks: int | None = 0  # looks a task stays Submitted (None: it never leaves the queue)
    fails_at_look: int = 0  # the task ends in Failure at this look (0: never)
    ends_after: int | None = None  # looks while executing before it ends in `end_state` (None: never)
    end_state: str = "Success"
    forward_port: int | None = None  # where each instance's port 22 is forwarded (None: no forward)
    host_keys: tuple[str, ...] = ()  # what each instance prints as its host keys
    stdout: str = ""  # what each instance prints besides its host keys
    stderr: str = ""
    workdir: dict[str, bytes] = field(default_factory=dict)  # what each task leaves as its results
    upload_looks: int | None = 1  # looks an aborted task spends in UploadingResults (None: forever)
    signal_while_uploading: int | None = None  # a real signal at the first look at it uploading

    def reset(self) -> None:
        fresh = Service()
        for each in fields(self):
            setattr(self, each.name, getattr(fresh, each.name))

    def step(self, call: str, argument: str = "") -> None:
        """A call of the backend: counted, recorded, and the faults chosen for it injected."""
        number = self.counts[call] = self.counts.get(call, 0) + 1
        self.calls.append((call, argument))
        signalled = self.signal_at.get(call)
        if signalled is not None and signalled[0] == number:
            os.kill(os.getpid(), signalled[1])  # its handler runs in the main thread, as a user's would
        if number in self.fail_at.get(call, set()):
            raise BackendError(f"the memory service failed {call} #{number}")


SERVICE = Service()


class MemoryBackend:
    """Tasks and buckets of `SERVICE`, spoken to in Qarnot's vocabulary."""

    name = "memory"

    def __init__(self) -> None:
        self.service = SERVICE

    # --- Backend --------------------------------------------------------------------------------

    def submit(self, request: TaskRequest) -> str:
        service = self.service
        service.step("submit", request.name)
        if service.creation == REFUSED:
            raise BackendError("creating the task: 429 Too Many Requests, refused after every retry")
        if service.creation == UNCLEAR_NOTHING:
            raise CreationUnresolved("creating the task: 502 Bad Gateway; no task of this launch was listed")
        made = [self._create(request) for _ in range(service.copies)]
        if service.creation == UNCLEAR:
            raise CreationUnresolved("creating the task: 504 Gateway Timeout; nothing listed")
        if service.creation == CREATED_BUT_FAILED:
            raise CreatedButFailed("reading the new task back: 500 Internal Server Error", made[0])
        return made[0]

    def _create(self, request: TaskRequest) -> str:
        task = MemoryTask(str(uuid.uuid4()), request, datetime.now(timezone.utc))
        self.service.tasks[task.id] = task
        return task.id

    def launched(self, launch_id: str) -> list[TaskView]:
        self.service.step("launched", launch_id)
        found = [task for task in self.service.tasks.values() if task.request.launch_id == launch_id]
        return [self._view_of(task) for task in found]

    def view(self, task_id: str) -> TaskView:
        self.service.step("view", task_id)
        task = self._task(task_id)
        task.looks += 1
        self._move(task)
        return self._view_of(task)

    def poll_not_before(self) -> float:
        return 0.0  # no request budget

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        self.service.step("output", task_id)
        task = self._task(task_id)
        indexes = range(task.request.instances) if instance is None else [instance]
        lines: list[str] = []
        for index in indexes:
            printed = self.service.stderr if stderr else self._stdout(task)
            prefix = "" if instance is not None else f"{index}> "
            lines.extend(prefix + line + "\n" for line in printed.splitlines())
        return "".join(lines)

    def stop(self, task_id: str) -> None:
        self.service.step("stop", task_id)
        self.service.tasks.pop(task_id, None)  # one already gone is what was wanted

    def tasks(self) -> list[TaskView]:
        self.service.step("tasks")
        return [self._view_of(task) for task in self.service.tasks.values()]

    # --- Storage --------------------------------------------------------------------------------

    def buckets(self) -> list[BucketView]:
        self.service.step("buckets")
        return [BucketView(name) for name in self.service.buckets]

    def create_bucket(self, name: str) -> None:
        self.service.step("create_bucket", name)
        if name in self.service.buckets:
            raise BackendError(f"bucket {name} exists already")
        self.service.buckets[name] = {}

    def delete_bucket(self, name: str) -> None:
        self.service.step("delete_bucket", name)
        self.service.buckets.pop(name, None)

    def objects(self, bucket: str) -> list[ObjectView]:
        self.service.step("objects", bucket)
        return [ObjectView(key, len(content)) for key, content in self._bucket(bucket).items()]

    def upload(self, bucket: str, key: str, source: BinaryIO | None, moved: BytesMoved) -> None:
        self.service.step("upload", key)
        content = source.read() if source is not None else b""
        self._bucket(bucket)[key] = content
        moved(len(content))

    def download(self, bucket: str, key: str, target: BinaryIO, moved: BytesMoved) -> None:
        self.service.step("download", key)
        content = self._bucket(bucket)[key]
        target.write(content)
        moved(len(content))

    def snapshot(self, task_id: str, timeout: float) -> None:
        self.service.step("snapshot", task_id)
        self._upload_results(self._task(task_id))

    def abort(self, task_id: str) -> None:
        self.service.step("abort", task_id)
        task = self._task(task_id)
        if task.state not in ENDED_STATES:
            task.state, task.looks = "UploadingResults", 0
            self._upload_results(task)

    # --- the service's side ---------------------------------------------------------------------

    def _task(self, task_id: str) -> MemoryTask:
        try:
            return self.service.tasks[task_id]
        except KeyError:
            raise TaskNotFound(f"no memory task {task_id}") from None

    def _bucket(self, name: str) -> dict[str, bytes]:
        try:
            return self.service.buckets[name]
        except KeyError:
            raise BackendError(f"no bucket {name}") from None

    def _upload_results(self, task: MemoryTask) -> None:
        """The working directory into the task's results bucket (a snapshot, a cancellation)."""
        if task.request.result_bucket:
            self._bucket(task.request.result_bucket).update(self.service.workdir)

    def _move(self, task: MemoryTask) -> None:
        """One step along Qarnot's states, at a look."""
        service = self.service
        if task.state == "UploadingResults":  # aborted: its results go up, then it is Cancelled
            if service.signal_while_uploading is not None:
                os.kill(os.getpid(), service.signal_while_uploading)
                service.signal_while_uploading = None
            if service.upload_looks is not None and task.looks >= service.upload_looks:
                task.state = "Cancelled"
            return
        if task.state in ENDED_STATES:
            return
        if service.fails_at_look and task.looks >= service.fails_at_look:
            task.state = "Failure"
            task.errors.append("instance 0 exited with code 1")
        elif service.queued_looks is None or task.looks <= service.queued_looks:
            task.state = "Submitted"
        elif task.state == "Submitted":
            task.state = "FullyDispatched"
        else:
            task.state = EXECUTING
            task.executing_looks += 1
            if service.ends_after is not None and task.executing_looks > service.ends_after:
                task.state = service.end_state

    def _stdout(self, task: MemoryTask) -> str:
        keys = "".join(f"{HOST_KEY_MARKER}{key}\n" for key in self.service.host_keys)
        return keys + self.service.stdout if task.state == EXECUTING or task.executing_looks else ""

    def _view_of(self, task: MemoryTask) -> TaskView:
        request = task.request
        port = self.service.forward_port if task.state == EXECUTING else None
        instances = tuple(
            InstanceView(index, forwarded(port, index, request.entries), attempt=1)
            for index in range(request.instances)
        )
        return TaskView(
            task.id, request.name, task.state, request.instances, instances, tuple(task.errors), task.created,
            result_bucket=request.result_bucket, profile=request.profile,
            watches_idle=IDLE_STOP_CONSTANT in request.constants,
        )  # fmt: skip


def forwarded(port: int | None, index: int, entries: tuple[int, ...] | None) -> Endpoint | None:
    """An instance's forward of port 22: only the entries get one (a cluster's master), once running."""
    return Endpoint("127.0.0.1", port) if port is not None and (entries is None or index in entries) else None


# The protocols, checked by mypy on a real instance (and by `registry.can` at run time).
_AS_BACKEND: Backend = MemoryBackend()
_AS_STORAGE: Storage = MemoryBackend()
