"""What the launcher needs from a place that runs tasks: Qarnot, or the local Docker engine.

Both speak Qarnot's vocabulary (states, instances, forwards of application port 22, stdout lines
prefixed by the instance id), so that readiness, pinning, ssh and clean-up are written once, in
`qimg.launcher.launch`, above them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, Generic, Protocol, TypeVar, runtime_checkable

from qimg.launcher.ssh import Endpoint

T = TypeVar("T")

TASK_TAG = "qimg"
EXECUTING = "FullyExecuting"
# A task in these states waits for machines (Qarnot's queue; --max-queue bounds it): not all its
# instances are placed yet.
QUEUED_STATES = frozenset({"Submitted", "PartiallyDispatched"})
# A task in one of these states will never run sshd again: execution is over (results are being
# uploaded or downloaded), it is being cancelled or deleted, or it ended.
ENDED_STATES = frozenset({
    "UploadingResults", "DownloadingResults", "PendingCancel", "Cancelled", "Success", "Failure",
    "PendingDelete", "Deleted",
})  # fmt: skip


# The constant of a task launched with --idle-stop: its instances' watchers print when it stops.
IDLE_STOP_CONSTANT = "QIMG_IDLE_STOP"

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


def is_cluster_profile(profile: str) -> bool:
    """Qarnot's cluster profiles (docker-cluster-network-ssh and the like) carry "cluster" in their
    name: their first instance is the master, the only one forwarded."""
    return "cluster" in profile.split("-")


def instance_command(constants: dict[str, str], index: int, cluster: bool) -> str:
    """What an instance runs: on a cluster profile, DOCKER_CMD_MASTER on the first instance and
    DOCKER_CMD_WORKER on the others; otherwise DOCKER_CMD on every one ("": the image's own)."""
    key = ("DOCKER_CMD_MASTER" if index == 0 else "DOCKER_CMD_WORKER") if cluster else "DOCKER_CMD"
    return constants.get(key, "")


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
    profile: str = ""
    watches_idle: bool = False  # launched with --idle-stop: its output says when it stops itself

    @property
    def cluster(self) -> bool:
        return is_cluster_profile(self.profile)

    @property
    def entries(self) -> list[int]:
        """The instances one logs into: a cluster's master only, else every instance."""
        return [0] if self.cluster else [instance.index for instance in self.instances]

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
            "profile": self.profile, "entry_instances": self.entries,
        }  # fmt: skip


MB_PER_GB = 1000  # --ram is in decimal GB, Qarnot's RAM in decimal MB


@dataclass(frozen=True)
class Hardware:
    """What an instance's machine must have (Qarnot's hardware constraints); nothing: any machine."""

    min_cores: int | None = None
    min_ram_mb: int | None = None  # decimal MB, as Qarnot's offers (32000.0): MB_PER_GB per GB of --ram
    gpu: bool = False
    ssd: bool = False
    keys: tuple[str, ...] = ()  # specific hardware, by the keys the account offers


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
    # A regex of paths under the working directory that snapshots and results leave out ("": none).
    left_out: str = ""
    hardware: Hardware = field(default_factory=Hardware)
    scheduling: str = "Flex"  # Qarnot's names: Flex, OnDemand, Reserved
    max_queue_seconds: int | None = None  # the task gives up when it waits longer in the queue
    reservation: str | None = None  # Reserved scheduling: the reservation's name
    # The instances to log into, so to pin (None: all); a cluster's workers have no forward.
    entries: tuple[int, ...] | None = None


# Quota names: "flex", "on-demand", "reservation NAME"; the organisation's start "organisation ".
RESERVATION_PREFIX, ORGANISATION_PREFIX = "reservation ", "organisation "


@dataclass(frozen=True)
class Quota:
    """One scheduling plan's limits and use; None where Qarnot did not report a number."""

    name: str  # flex, on-demand, or "reservation NAME"; the organisation's prefixed "organisation "
    max_instances: int | None
    running_instances: int | None
    max_cores: int | None
    running_cores: int | None


@dataclass(frozen=True)
class AccountView:
    """The account's balance and quotas, as reported (None: not reported, or not in time)."""

    balance: float | None  # euros
    tasks: int | None
    max_tasks: int | None
    running_tasks: int | None
    max_running_tasks: int | None
    # Qarnot's maxInstances (per task or in all: unknown); either way no task may ask for more.
    max_instances: int | None
    quotas: tuple[Quota, ...] = ()

    def quota(self, name: str) -> Quota | None:
        return next((quota for quota in self.quotas if quota.name == name), None)


@dataclass(frozen=True)
class HardwareOffer:
    """A hardware constraint the account may use: its kind (Qarnot's discriminator) and value."""

    kind: str
    value: str = ""  # the key of specific hardware, a core count, a CPU model ...


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

    def poll_not_before(self) -> float:
        """The monotonic time before which another look at a task would spend more of the service's
        requests than its budget allows (0.0: no budget)."""
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

    def upload(self, bucket: str, key: str, source: BinaryIO | None, moved: BytesMoved) -> None:
        """The open file `source` as `key`; None puts an empty object (a directory marker, `key` ends
        in /)."""
        ...

    def download(self, bucket: str, key: str, target: BinaryIO, moved: BytesMoved) -> None: ...

    def snapshot(self, task_id: str, timeout: float) -> None:
        """Upload the task's working directory to its result bucket now, and wait until that is done."""
        ...

    def abort(self, task_id: str) -> None:
        """Stop the task's execution without deleting it: its results are uploaded, then it ends."""
        ...


@runtime_checkable
class Account(Protocol):
    """An account behind the backend (Qarnot's): its profiles, its quotas and its balance."""

    def profile_names(self) -> list[str]: ...

    def account(self) -> AccountView: ...

    def balance(self) -> float | None: ...


@runtime_checkable
class HardwareChoice(Protocol):
    """Machines chosen per task (Qarnot): the request's hardware, scheduling, reservation and time in
    queue mean something, and the account says which hardware it may ask for. A backend without it
    runs every task on one machine as it is."""

    def hardware_offers(self) -> list[HardwareOffer]: ...


@dataclass(frozen=True)
class Capability(Generic[T]):
    """Something only some backends can do: the runtime-checkable `protocol` above that says so, and
    how a refusal names it (`registry.require`)."""

    protocol: type
    noun: str


STORAGE: Capability[Storage] = Capability(Storage, "buckets")
ACCOUNT: Capability[Account] = Capability(Account, "an account")
HARDWARE: Capability[HardwareChoice] = Capability(HardwareChoice, "a choice of machines")
