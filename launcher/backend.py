"""What the launcher needs from a place that runs tasks: Qarnot, or the local Docker engine.

Both speak Qarnot's vocabulary (states, instances, forwards of application port 22, stdout lines
prefixed by the instance id), so that readiness, pinning, ssh and clean-up are written once, in
`launch.py`, above them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from qimg.errors import QimgError

if TYPE_CHECKING:
    import docker

TASK_TAG = "qimg"
EXECUTING = "FullyExecuting"
# A task in one of these states will never run sshd again.
ENDED_STATES = frozenset({"Success", "Failure", "Cancelled", "PendingCancel", "PendingDelete", "Deleted"})


class BackendError(QimgError):
    """The place that runs tasks refused or failed a request."""


class TaskNotFound(QimgError):
    """No task of that name or id (any more)."""


@dataclass(frozen=True)
class Forward:
    host: str
    port: int


@dataclass(frozen=True)
class InstanceView:
    index: int
    forward: Forward | None  # the forward of application port 22, once there is one
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

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def running(self) -> int:
        return sum(1 for instance in self.instances if instance.forward is not None)

    @property
    def endpoints(self) -> list[str]:
        return [f"{i.forward.host}:{i.forward.port}" for i in self.instances if i.forward is not None]

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


class Backend(Protocol):
    name: str

    def submit(self, request: TaskRequest) -> str:
        """Start the task; returns its id."""
        ...

    def view(self, task_id: str) -> TaskView:
        """The task as it is now (raises TaskNotFound once it is gone)."""
        ...

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        """All of its stdout (or stderr), of one instance or of all, lines prefixed with "N> " for all."""
        ...

    def new_output(self, task_id: str, *, stderr: bool = False) -> str:
        """What was written since the last call (for `logs -f`)."""
        ...

    def stop(self, task_id: str) -> None:
        """Abort and delete; nothing of the task runs or is billed afterwards."""
        ...

    def tasks(self) -> list[TaskView]:
        """Every task launched by qimg that still exists."""
        ...


def open_backend(name: str, client: docker.DockerClient | None = None) -> Backend:
    """The backend called `name`: qarnot (needs a token) or local (the Docker engine, `client` if
    given); their libraries are imported only here."""
    if name == "local":
        from qimg import engine
        from qimg.launcher.local import LocalBackend

        return LocalBackend(client or engine.client())
    from qimg.launcher.qarnot_backend import QarnotBackend

    return QarnotBackend()


def find_task(backend: Backend, name: str) -> TaskView:
    matches = [task for task in backend.tasks() if task.name == name]
    if not matches:
        raise TaskNotFound(f"no task named {name} on {backend.name}: `qimg ls` lists them")
    return max(matches, key=lambda task: task.created or datetime.min)
