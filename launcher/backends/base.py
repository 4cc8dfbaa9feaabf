"""What the launcher needs from a place that runs tasks: Qarnot, or the local Docker engine.

Both speak Qarnot's vocabulary (states, instances, forwards of application port 22, stdout lines
prefixed by the instance id), so that readiness, pinning, ssh and clean-up are written once, in
`qimg.launcher.launch`, above them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from qimg.launcher.ssh import Endpoint

TASK_TAG = "qimg"
EXECUTING = "FullyExecuting"
# A task in one of these states will never run sshd again: execution is over (results are being
# uploaded or downloaded), it is being cancelled or deleted, or it ended.
ENDED_STATES = frozenset({
    "UploadingResults", "DownloadingResults", "PendingCancel", "Cancelled", "Success", "Failure",
    "PendingDelete", "Deleted",
})  # fmt: skip


def launch_tag(launch_id: str) -> str:
    """The tag of every task one launch created: resubmissions included, they are found by it."""
    return f"{TASK_TAG}-launch-{launch_id}"


@dataclass(frozen=True)
class InstanceView:
    index: int
    forward: Endpoint | None  # the forward of application port 22, once there is one
    attempt: int = 0  # execution attempts so far: a restarted instance may come back elsewhere


@dataclass(frozen=True)
class TaskView:
    id: str
    name: str
    state: str
    instance_count: int
    instances: tuple[InstanceView, ...] = ()
    errors: tuple[str, ...] = ()
    created: datetime | None = None
    credits: float | None = None
    result_bucket: str = ""  # where the task's results go ("" when it has none)

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def running(self) -> int:
        return sum(1 for instance in self.instances if instance.forward is not None)

    @property
    def endpoints(self) -> list[str]:
        return [str(i.forward) for i in self.instances if i.forward is not None]

    def as_dict(self, now: datetime) -> dict[str, object]:
        return {
            "name": self.name, "id": self.id, "state": self.state, "endpoints": self.endpoints,
            "age_seconds": int((now - self.created).total_seconds()) if self.created else None,
            "credits": self.credits, "errors": list(self.errors),
        }  # fmt: skip


@dataclass(frozen=True)
class TaskRequest:
    name: str
    image: str  # the reference the engine runs (the local backend); Qarnot reads the DOCKER_* constants
    profile: str
    instances: int
    constants: dict[str, str] = field(default_factory=dict)
    launch_id: str = ""  # tags every task this request creates (`launch_tag`)
    resource_buckets: tuple[str, ...] = ()  # their files appear in the task's working directory
    result_bucket: str = ""  # receives the working directory: snapshots, the end, a cancellation
    snapshot_seconds: int = 0  # periodic snapshots into the result bucket (0: none)


class Backend(Protocol):
    name: str

    def submit(self, request: TaskRequest) -> str:
        """Start the task; returns its id. A request the service may have received twice is reconciled:
        one task of the launch is kept, any other is deleted."""
        ...

    def launched(self, launch_id: str) -> list[TaskView]:
        """The tasks of one launch that still exist (its tag finds them even when submit failed)."""
        ...

    def view(self, task_id: str) -> TaskView:
        """The task as it is now (raises TaskNotFound once it is gone)."""
        ...

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        """All of its stdout (or stderr), of one instance or of all, lines prefixed with "N> " for all."""
        ...

    def stop(self, task_id: str) -> None:
        """Abort and delete; nothing of the task runs or is billed afterwards."""
        ...

    def tasks(self) -> list[TaskView]:
        """Every task launched by qimg that still exists."""
        ...


@dataclass(frozen=True)
class BucketView:
    name: str
    created: datetime | None = None


@dataclass(frozen=True)
class ObjectView:
    """One object of a bucket, as the storage lists it: its key is untrusted (`launcher.buckets`)."""

    key: str
    size: int


# Called from the transfer's threads with the bytes moved since the previous call.
BytesMoved = Callable[[int], None]


@runtime_checkable
class Storage(Protocol):
    """Buckets and the results of running tasks: Qarnot's S3 storage (the local engine has none)."""

    def buckets(self) -> list[BucketView]: ...

    def create_bucket(self, name: str) -> None:
        """A new, empty bucket; BackendError if one of that name exists already."""
        ...

    def delete_bucket(self, name: str) -> None:
        """The bucket and every object in it; a bucket already gone is what was wanted."""
        ...

    def objects(self, bucket: str) -> list[ObjectView]: ...

    def upload(self, bucket: str, key: str, source: Path | None, moved: BytesMoved) -> None:
        """The file `source` as `key`; None puts an empty object (a directory marker, `key` ends in /)."""
        ...

    def download(self, bucket: str, key: str, target: BinaryIO, moved: BytesMoved) -> None: ...

    def snapshot(self, task_id: str, timeout: float) -> None:
        """Upload the task's working directory to its result bucket now, and wait until that is done."""
        ...

    def abort(self, task_id: str) -> None:
        """Stop the task's execution without deleting it: its results are uploaded, then it ends."""
        ...
