"""A fake of Qarnot's REST API that the real `qarnot` SDK talks to, and that really runs tasks.

Faithful to ../shared/qarnot-api.md: the paths the SDK uses (repeated slashes collapsed, optional
/v1 prefix), camelCase JSON with the fields the SDK's parser needs, `{"message": ...}` errors, 401 for
a wrong token, stdout and fresh stdout (lines prefixed "N> " for the whole task), paginated listing
with the tag filter.

As harsh as the real service where it is known to be harsher: constants are checked against the
API's limits; `QARNOT_SECRET__` constants read back as `[SECRET]`; `${NAME}` in constants is
substituted before the container starts; a deleted task lingers in PendingDelete before GET says
404; the output lags behind the container and is a bounded buffer. Where the reference says a
behaviour is unknown, the fake takes the harsher reading and says so where it does.

A submitted task is pulled from DOCKER_SRV/DOCKER_REPO:DOCKER_TAG with the given registry
credentials, then runs one container per instance with the constants as environment, DOCKER_CMD
as command and DOCKER_USER as user; port 22 is published on 127.0.0.1 and reported as the
instance's active forward. On a cluster profile (docker-cluster-network-ssh and the like) instance 0
is the master: it runs DOCKER_CMD_MASTER and is the only one forwarded; the others run
DOCKER_CMD_WORKER. Only profiles with ssh in their name forward port 22; a task of another profile
(a batch task: its command is the task) ends Success or Failure when all its containers exited.
Faults come from `FakeQarnot.faults`; `restart_instance` moves an instance to a
new port, as a preempted instance does; `end_task` puts a task in an ending state.

The account behind the token (`FakeQarnot.account`) serves GET /profiles, GET /hardware-constraints
(offset pages: discrete values, RAM in decimal MB as floats), GET /info (task counts and computing
quotas, the user's and the organisation's, running counts from the live tasks) and the account's
credits; POST /tasks refuses a profile the account does not have, a Reserved task that names none of
its reservations, a hardware constraint no offer satisfies (402, "hardware constraint" in the
message) and, with the SDK's own message, a task over the task quota. Every request's JSON body is kept in
`FakeQarnot.bodies`, for tests to read what the SDK sent.

Storage, once `attach_storage` gives it a real S3 emulator: `GET /settings` names it, submission
refuses buckets that do not exist (404, as the SDK expects), each instance gets a working directory
of its own at DOCKER_WORKDIR (a host directory, fresh at every start, filled from the resource
buckets), and the working directories go to the result bucket on an instant snapshot (`POST
/tasks/{uuid}/snapshot`, status at `GET .../snapshot/{id}`), every `interval` of a periodic one, at the
end (`end_task`), and on an abort when the task asked for `uploadResultsOnCancellation`. Uploads take
`upload_seconds`, during which a snapshot is InProgress and an aborted task UploadingResults. Harsh
readings of unknowns: a DELETE uploads nothing; a restarted instance starts from the resources again;
an instant snapshot of a task that is not executing is refused (403); uploads add and replace objects
and never delete any.
"""

from __future__ import annotations

import calendar
import contextlib
import itertools
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import docker
from docker.errors import DockerException
from docker.models.containers import Container

FAKE_LABEL = "io.qimg.fake-qarnot-task"
PAGE_SIZE = 2  # small, so that listing exercises the SDK's pagination
REQUIRED_FIELDS = ("name", "profile", "instanceCount", "constants")
# The API model's limits on constants.
MAX_CONSTANTS = 150
MAX_CONSTANT_LENGTH = 2048
CONSTANT_KEY = re.compile(r"[A-Za-z0-9_.-]+")
SECRET_PREFIX = "QARNOT_SECRET__"
SECRET_SHOWN = "[SECRET]"
# Execution is over in all of these. The SDK's wait() still waits through UploadingResults and
# DownloadingResults (results move after the instances stopped), but nothing runs any more.
ENDING_STATES = frozenset(
    {"UploadingResults", "DownloadingResults", "PendingCancel", "Cancelled", "Success", "Failure"}
)
# The hardware constraints the SDK knows (qarnot/hardware_constraint.py), and the field each carries.
HARDWARE_FIELDS = {
    "MinimumCoreHardwareConstraint": "coreCount", "MaximumCoreHardwareConstraint": "coreCount",
    "MinimumRamCoreRatioHardwareConstraint": "minimumMemoryGBCoreRatio",
    "MaximumRamCoreRatioHardwareConstraint": "maximumMemoryGBCoreRatio",
    "MinimumRamHardwareConstraint": "minimumMemoryMB", "MaximumRamHardwareConstraint": "maximumMemoryMB",
    "SpecificHardwareConstraint": "specificationKey", "CpuModelHardwareConstraint": "cpuModel",
    "GpuHardwareConstraint": None, "NoGpuHardwareConstraint": None, "SSDHardwareConstraint": None,
    "NoSSDHardwareConstraint": None,
}  # fmt: skip
SCHEDULING_TYPES = {"Flex": "flex", "OnDemand": "onDemand", "Reserved": "reserved"}  # -> its quota
CORES_PER_INSTANCE = 2  # what an instance counts against the core quotas without MinimumCore
RUNNING_COUNTS = ("runningInstancesCount", "runningCoresCount")


def is_cluster(profile: str) -> bool:
    return "cluster" in profile.split("-")


Entry = tuple[float, str]  # (when the engine logged it, in seconds since the epoch; the text, with "\n")


@dataclass
class Faults:
    status_burst: list[int] = field(default_factory=list)  # replies to the next task reads, one each
    slow_seconds: float = 0.0  # added to every reply
    drop_connections: int = 0  # the next task reads get the connection closed, no reply
    forward_delay: float = 0.0  # seconds of FullyExecuting without forwards
    failure: tuple[str, str] | None = None  # (code, message): the task fails instead of running
    # A gateway that times out after the API created the task: the next `gateway_error_times`
    # POST /tasks each create their task, then answer this status instead of the uuid (0: off).
    gateway_error_after_create: int = 0
    gateway_error_times: int = 1
    missing_after_create: int = 0  # the next N created tasks answer 404 to their first GET /tasks/{uuid}
    # The next `hang_next` requests whose "METHOD /path" (as routed: slashes collapsed, no /v1) fully
    # matches one of `hang_paths` get no reply: the connection stays open until the fake shuts down
    # or `hang_seconds` pass, then closes.
    hang_next: int = 0
    hang_paths: tuple[str, ...] = (r".*",)
    hang_seconds: float = 3600.0
    credits_unavailable: bool = False  # GET /credits/v1/tasks/{uuid}/credits answers 503 while set
    delete_refused: set[str] = field(default_factory=set)  # task ids whose DELETE answers 500 while set
    queue_seconds: float = 0.0  # added to the time each new task stays Submitted (queued)
    status_while_uploading: int = 0  # reads of a task in UploadingResults answer this status (0: off)
    periodic_snapshot_refused: bool = False  # POST /tasks/{uuid}/snapshot/periodic answers 500 while set
    # Creation under pressure. The next POST /tasks are refused, nothing created, one status of
    # `create_refusals` each (429, 503), with `Retry-After: create_retry_after` when set; a creation
    # sent before that many seconds have passed is refused again (503, not counted).
    create_refusals: list[int] = field(default_factory=list)
    create_retry_after: int | None = None
    refused_until: float = 0.0  # monotonic time before which creations are refused (Retry-After)
    drop_after_create: int = 0  # the next N POST /tasks create their task, then drop the connection
    drop_before_create: int = 0  # the next N POST /tasks drop the connection, nothing created
    listing_lag: float = 0.0  # seconds before a new task appears in a listing (the filtered ones too)
    settings_errors: list[int] = field(default_factory=list)  # answered to the next GET /settings, one each


@dataclass
class Account:
    """The account behind the token. Quotas are limits; what runs is counted from the live tasks."""

    profiles: list[str] = field(
        default_factory=lambda: [
            "docker-batch", "docker-network", "docker-network-ssh", "docker-cluster-network-ssh",
            "docker-nvidia-network-ssh",
        ]
    )  # fmt: skip
    # As Qarnot's hardware page lists an account's offers: discrete values, RAM in decimal MB as
    # floats. A submitted constraint no offer satisfies is refused (402, `hardware_problem`).
    hardware: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"discriminator": "SpecificHardwareConstraint", "specificationKey": "16c-128g-amd"},
            {"discriminator": "SpecificHardwareConstraint", "specificationKey": "8c-32g-nvidia-a4000"},
            {"discriminator": "GpuHardwareConstraint"},
            {"discriminator": "SSDHardwareConstraint"},
            {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 8},
            {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 16},
            {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 32},
            {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 32000.0},
            {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 64000.0},
            {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 128000.0},
        ]
    )  # fmt: skip
    balance: float = 42.5  # euros
    max_tasks: int = 50
    max_running_tasks: int = 20
    max_instances: int = 64
    # {"maxInstances", "maxCores"} per scheduling plan, and for each reservation its
    # "reservationName" and "machineKey" too.
    flex: dict[str, int] = field(default_factory=lambda: {"maxInstances": 64, "maxCores": 256})
    on_demand: dict[str, int] = field(default_factory=lambda: {"maxInstances": 16, "maxCores": 64})
    reserved: list[dict[str, Any]] = field(default_factory=list)
    # computingQuotas.organization: limits as above (and "reservationName" for each reservation),
    # and what the organisation's other users run ("runningInstancesCount", "runningCoresCount");
    # this user's live tasks are added to those. None: not reported.
    organization: dict[str, Any] | None = field(
        default_factory=lambda: {
            "name": "fake-org", "flex": {"maxInstances": 128, "maxCores": 512},
            "onDemand": {"maxInstances": 32, "maxCores": 128}, "reserved": [],
        }
    )  # fmt: skip


@dataclass
class Instance:
    index: int
    container_id: str = ""
    port: int = 0
    attempts: int = 0
    # Output of containers gone (earlier attempts, an aborted task): Qarnot keeps it.
    earlier: dict[str, list[Entry]] = field(default_factory=lambda: {"stdout": [], "stderr": []})
    workdir: Path | None = None  # the host directory mounted at DOCKER_WORKDIR (with storage)


@dataclass
class FakeTask:
    uuid: str
    name: str
    profile: str
    instance_count: int
    constants: dict[str, str]  # the true values, secrets included (see FakeQarnot.visible_constants)
    tags: list[str]
    created: datetime
    state: str = "Submitted"
    errors: list[dict[str, str]] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    forwards_from: float = 0.0
    # Where each fresh (POST) reader is: (stream, instance asked for or None for all, instance) ->
    # characters of that instance's output already returned.
    fresh_offsets: dict[tuple[str, int | None, int], int] = field(default_factory=dict)
    executing_since: float = 0.0
    hidden_reads: int = 0  # GET /tasks/{uuid} answers 404 this many more times (missing_after_create)
    deleted_at: float = 0.0
    resource_buckets: list[str] = field(default_factory=list)
    result_bucket: str = ""
    upload_results_on_cancellation: bool = False
    snapshot_interval: int = 0
    snapshots: dict[str, str] = field(default_factory=dict)  # instant snapshot id -> status
    # Regexes of paths under the working directory left out (snapshotBlacklist, resultsBlacklist).
    snapshot_blacklist: str = ""
    results_blacklist: str = ""
    hardware: list[dict[str, Any]] = field(default_factory=list)  # hardwareConstraints, as sent
    scheduling: str | None = None  # schedulingType, as sent (None: the platform's default, Flex)
    max_time_queue: int | None = None  # maxTimeQueueSeconds
    held: bool = False  # waits in the queue for good (FakeQarnot.unoffered_ram == "queue")

    @property
    def cores_per_instance(self) -> int:
        minimum = "MinimumCoreHardwareConstraint"
        asked = [int(c["coreCount"]) for c in self.hardware if c["discriminator"] == minimum]
        return max([CORES_PER_INSTANCE, *asked])


class FakeQarnot:
    def __init__(
        self,
        client: docker.DockerClient,
        token: str = "fake-token",
        *,
        linger_seconds: float = 2.0,
        output_lag_seconds: float = 0.5,
        output_limit_bytes: int = 64 * 1024,
    ) -> None:
        self.client = client
        self.token = token
        self.linger_seconds = linger_seconds  # how long a deleted task stays visible in PendingDelete
        self.output_lag_seconds = output_lag_seconds  # output is served only once it is this old
        self.output_limit_bytes = output_limit_bytes  # of each instance's stdout (and stderr) kept
        self.faults = Faults()
        self.tasks: dict[str, FakeTask] = {}  # tasks that are not deleted
        self.deleted: dict[str, FakeTask] = {}  # deleted tasks still lingering in PendingDelete
        self.requests: list[tuple[str, str]] = []
        self.request_times: list[float] = []  # time.monotonic() of each of `requests`
        self.bodies: list[tuple[str, str, Any]] = []  # (method, path, the JSON body) of every request
        self.deleted_in: list[str] = []  # the state of each task when its DELETE came
        self.buckets_at_delete: list[list[str]] = []  # which of its buckets existed then, for each
        self.account = Account()
        self.started: set[str] = set()  # ids of every container the fake started
        self.lock = threading.RLock()
        self.closing = threading.Event()  # releases hung replies
        self.storage_url: str | None = None
        self.s3: Any = None  # a boto3 client of the storage
        self.workdirs_root: Path | None = None
        self.upload_seconds = 0.5  # how long the platform takes to upload results
        # Readings of what only a real account settles (`qimg doctor` reports them: tests/e2e/test_doctor.py).
        self.secret_bare_name = True  # a QARNOT_SECRET__X constant also reaches the container as X
        self.workdir_mode = 0o755  # of DOCKER_WORKDIR (root's) when an instance starts
        # A hardware value the account does not offer exactly: "refuse" (402 with "hardware constraint",
        # the harsher reading) or "queue" (the task stays Submitted for good).
        self.unoffered_ram = "refuse"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True  # server_close() does not wait for handlers (hung ones)
        self.thread = threading.Thread(  # a short poll: shutdown() waits for one
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeQarnot:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self.lock:  # a task starting its containers finishes first; later ones see `closing`
            self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        for container in self.containers():
            with contextlib.suppress(DockerException):
                container.remove(force=True)
        if self.workdirs_root is not None:
            shutil.rmtree(self.workdirs_root, ignore_errors=True)

    def attach_storage(self, url: str) -> None:
        """Serve buckets from the S3 emulator at `url` (before the SDK connects: it reads /settings once)."""
        import boto3

        self.storage_url = url
        self.s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="fake",
            aws_secret_access_key="fake",
        )  # fmt: skip
        self.workdirs_root = Path(tempfile.mkdtemp(prefix="fake-qarnot-workdirs-"))

    # --- what tests look at ------------------------------------------------------------------------

    def count(self, method: str, path: str) -> int:
        return sum(1 for request in self.requests if request == (method, path))

    def body(self, method: str, path: str) -> Any:
        """The JSON body of the last such request (None if it had none)."""
        return next(body for m, p, body in reversed(self.bodies) if (m, p) == (method, path))

    def user_info(self) -> dict[str, Any]:
        """GET /info, as the SDK's UserInfo and ComputingQuotas read it."""
        with self.lock:
            live = self.live()
            running = {
                plan: {"runningInstancesCount": 0, "runningCoresCount": 0} for plan in ("flex", "onDemand")
            }
            for task in live:
                counts = running.get(SCHEDULING_TYPES.get(task.scheduling or "Flex", ""))
                if counts is not None:
                    counts["runningInstancesCount"] += task.instance_count
                    counts["runningCoresCount"] += task.instance_count * task.cores_per_instance
            account = self.account
            return {
                "email": "fake@example.com", "taskCount": len(self.tasks), "maxTask": account.max_tasks,
                "runningTaskCount": len(live), "maxRunningTask": account.max_running_tasks,
                "maxInstances": account.max_instances,
                "computingQuotas": {
                    "user": {
                        "flex": {**account.flex, **running["flex"]},
                        "onDemand": {**account.on_demand, **running["onDemand"]},
                        "reserved": [
                            {"runningInstancesCount": 0, "runningCoresCount": 0, **reservation}
                            for reservation in account.reserved
                        ],
                    },
                    "organization": organization_quotas(account.organization, running),
                },
            }  # fmt: skip

    def running(self) -> list[FakeTask]:
        """Tasks that still run a container (after a test, only the ones it kept)."""
        with self.lock:
            return [task for task in self.tasks.values() if any(i.container_id for i in task.instances)]

    def live(self) -> list[FakeTask]:
        """Tasks that are not over: neither deleted nor in an ending state (they would still bill)."""
        with self.lock:
            return [task for task in self.tasks.values() if task.state not in ENDING_STATES]

    def containers(self) -> list[Container]:
        """Containers the fake started that still exist, running or not."""
        found = self.client.containers.list(all=True, filters={"label": FAKE_LABEL})
        return [container for container in found if container.id in self.started]

    def visible_constants(self, task: FakeTask) -> dict[str, str]:
        """The constants as a reader of the API sees them: secrets are write-only."""
        return {k: SECRET_SHOWN if k.startswith(SECRET_PREFIX) else v for k, v in task.constants.items()}

    def restart_instance(self, task_id: str, index: int) -> None:
        """Preemption: the instance's container goes, a new one comes back on another port."""
        with self.lock:
            task = self.tasks[task_id]
            instance = task.instances[index]
            old_port = instance.port
            self._remove_container(instance)
            self._start_instance(task, instance, avoid_port=old_port)

    def end_task(self, task_id: str, state: str) -> None:
        """The task reaches an ending state: its containers stop (their output stays readable), and
        its working directories go to its result bucket."""
        if state not in ENDING_STATES:
            raise ValueError(f"{state} is not an ending state: {sorted(ENDING_STATES)}")
        with self.lock:
            task = self.tasks[task_id]
            self._remove_containers(task)
            self.upload_results(task, task.results_blacklist)
            task.state = state

    def find(self, task_id: str) -> FakeTask | None:
        """A task as the API serves it: not deleted, or deleted and still lingering."""
        with self.lock:
            self._forget_deleted()
            return self.tasks.get(task_id) or self.deleted.get(task_id)

    def listed(self) -> list[FakeTask]:
        """Every task the API lists, oldest first: deleted ones too while they linger."""
        with self.lock:
            self._forget_deleted()
            return sorted([*self.tasks.values(), *self.deleted.values()], key=lambda task: task.created)

    def _forget_deleted(self) -> None:
        now = time.monotonic()
        for gone in [t for t in self.deleted.values() if now - t.deleted_at >= self.linger_seconds]:
            del self.deleted[gone.uuid]

    # --- task life ---------------------------------------------------------------------------------

    def submit(self, body: dict[str, Any], *, held: bool = False) -> FakeTask:
        constants = {str(c["key"]): str(c["value"]) for c in body["constants"]}  # values may be numbers
        task = FakeTask(
            str(uuid.uuid4()), str(body["name"]), str(body["profile"]), int(body["instanceCount"]),
            constants, [str(tag) for tag in body.get("tags") or []], datetime.now(timezone.utc),
            resource_buckets=bucket_names(body), result_bucket=str(body.get("resultBucket") or ""),
            upload_results_on_cancellation=bool(body.get("uploadResultsOnCancellation")),
            hardware=list(body.get("hardwareConstraints") or []), scheduling=body.get("schedulingType"),
            max_time_queue=body.get("maxTimeQueueSeconds"), held=held,
            snapshot_blacklist=str(body.get("snapshotBlacklist") or ""),
            results_blacklist=str(body.get("resultsBlacklist") or ""),
        )  # fmt: skip
        task.instances = [Instance(index) for index in range(task.instance_count)]
        with self.lock:
            if self.faults.missing_after_create > 0:
                self.faults.missing_after_create -= 1
                task.hidden_reads = 1
            self.tasks[task.uuid] = task
        threading.Thread(target=self._run, args=(task,), daemon=True).start()
        return task

    def uploading(self, path: str) -> bool:
        """Whether the task of a /tasks/{uuid} path is UploadingResults."""
        match = _TASK.fullmatch(path)
        task = self.find(match.group(1)) if match else None
        return task is not None and task.state == "UploadingResults"

    def delete(self, task: FakeTask) -> None:
        """DELETE /tasks/{uuid}: the containers go at once (no results are uploaded), the task lingers
        in PendingDelete."""
        with self.lock:
            self.deleted_in.append(task.state)
            if self.s3 is not None:
                existing = {b["Name"] for b in self.s3.list_buckets()["Buckets"]}
                mine = [*task.resource_buckets, *([task.result_bucket] if task.result_bucket else [])]
                self.buckets_at_delete.append([name for name in mine if name in existing])
            self._remove_containers(task)
            for instance in task.instances:
                self._drop_workdir(instance)
            task.state = "PendingDelete"
            task.deleted_at = time.monotonic()
            del self.tasks[task.uuid]
            self.deleted[task.uuid] = task

    def _run(self, task: FakeTask) -> None:
        self.closing.wait(0.2 + self.faults.queue_seconds)  # Submitted: in the queue
        with self.lock:
            if task.state != "Submitted" or task.held:
                return
            task.state = "FullyDispatched"
        if self.faults.failure:
            code, message = self.faults.failure
            self._fail(task, code, message)
            return
        srv = task.constants.get("DOCKER_SRV", "https://registry-1.docker.io")
        repository = f"{re.sub(r'^https?://', '', srv).rstrip('/')}/{task.constants.get('DOCKER_REPO', '')}"
        login = task.constants.get("DOCKER_REGISTRY_LOGIN")
        # Qarnot's samples send the password as a secret; the plain constant works too.
        password = task.constants.get(
            f"{SECRET_PREFIX}DOCKER_REGISTRY_PASSWORD", task.constants.get("DOCKER_REGISTRY_PASSWORD", "")
        )
        try:
            self.client.images.pull(
                repository,
                tag=task.constants.get("DOCKER_TAG", "latest"),
                auth_config={"username": login, "password": password} if login else None,
            )
        except DockerException as error:
            self._fail(task, "PullFailed", f"cannot pull {repository}: {str(error)[:300]}")
            return
        with self.lock:
            if task.state != "FullyDispatched" or self.closing.is_set():
                return
            try:
                for instance in task.instances:
                    self._start_instance(task, instance)
            except DockerException as error:
                self._remove_containers(task)
                self._fail(task, "StartFailed", str(error)[:300])
                return
            task.state = "FullyExecuting"
            task.executing_since = time.monotonic()
            task.forwards_from = time.monotonic() + self.faults.forward_delay

    def environment(self, task: FakeTask, instance: Instance) -> dict[str, str]:
        """What the instance's container gets: constants with ${NAME} substituted, secrets in clear."""
        # The name under which the platform passes a secret into the container is unknown: the fake
        # passes it under both its full key and the bare name. A constant of that bare name wins.
        secrets = {
            key.removeprefix(SECRET_PREFIX): value
            for key, value in task.constants.items()
            if key.startswith(SECRET_PREFIX) and key != SECRET_PREFIX and self.secret_bare_name
        }
        platform = {"INSTANCE_ID": str(instance.index)}  # the profile sets it, over any constant
        # INSTANCE_COUNT is documented as substituted only, so it is not in the environment.
        names = {**task.constants, **platform, "INSTANCE_COUNT": str(task.instance_count)}
        raw = {**secrets, **task.constants, **platform}
        return {key: substitute(value, names) for key, value in raw.items()}

    def _start_instance(self, task: FakeTask, instance: Instance, avoid_port: int = 0) -> None:
        srv = re.sub(r"^https?://", "", task.constants.get("DOCKER_SRV", "")).rstrip("/")
        image = f"{srv}/{task.constants['DOCKER_REPO']}:{task.constants.get('DOCKER_TAG', 'latest')}"
        environment = self.environment(task, instance)
        cluster = is_cluster(task.profile)
        role = "DOCKER_CMD"
        if cluster:
            role = "DOCKER_CMD_MASTER" if instance.index == 0 else "DOCKER_CMD_WORKER"
        # Only profiles with ssh in their name forward port 22, and of a cluster only its master.
        forwarded = "ssh" in task.profile.split("-") and (not cluster or instance.index == 0)
        mounts = {}
        if self.s3 is not None:
            workdir = environment.get("DOCKER_WORKDIR") or "/job"
            mounts = {str(self._fresh_workdir(task, instance)): {"bind": workdir, "mode": "rw"}}
        for _ in range(5):  # the engine may hand back the port just freed: a restart must move
            container = self.client.containers.run(
                image, command=environment.get(role) or None, detach=True,
                environment=environment, user=environment.get("DOCKER_USER") or None,
                ports={"22/tcp": ("127.0.0.1", 0)} if forwarded else {}, labels={FAKE_LABEL: task.uuid},
                volumes=mounts,
            )  # fmt: skip
            self.started.add(container.id or "")
            container.reload()
            published = container.attrs["NetworkSettings"]["Ports"].get("22/tcp")
            port = int(published[0]["HostPort"]) if published else 0  # none once the command has exited
            if not avoid_port or port != avoid_port:
                break
            container.remove(force=True)
        instance.container_id, instance.port = container.id or "", port
        instance.attempts += 1

    # --- storage: working directories, resource and result buckets --------------------------------------

    def _fresh_workdir(self, task: FakeTask, instance: Instance) -> Path:
        """A new working directory for the instance, holding its resource buckets' files. Harsh
        reading of an unknown (the platform makes it, its owner is not documented): owned by root,
        0755, as a directory the engine creates for a container is; the files 0644."""
        assert self.workdirs_root is not None
        self._drop_workdir(instance)
        root = Path(tempfile.mkdtemp(prefix=f"{task.uuid[:8]}-{instance.index}-", dir=self.workdirs_root))
        for bucket in task.resource_buckets:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    key = str(item["Key"])
                    parts = key.removesuffix("/").split("/")
                    if key.startswith("/") or any(part in {"", ".", ".."} for part in parts):
                        continue  # the platform would not write outside the working directory either
                    target = root.joinpath(*parts)
                    if key.endswith("/"):
                        target.mkdir(parents=True, exist_ok=True)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        self.s3.download_file(bucket, key, str(target))
        for folder, _, files in os.walk(root):
            os.chown(folder, 0, 0)
            os.chmod(folder, 0o755)
            for name in files:
                os.chown(os.path.join(folder, name), 0, 0)
                os.chmod(os.path.join(folder, name), 0o644)
        os.chmod(root, self.workdir_mode)
        instance.workdir = root
        return root

    def _drop_workdir(self, instance: Instance) -> None:
        if instance.workdir is not None:
            shutil.rmtree(instance.workdir, ignore_errors=True)
            instance.workdir = None

    def upload_results(self, task: FakeTask, left_out: str = "") -> None:
        """Every instance's working directory into the result bucket: regular files, and empty
        directories as "dir/" objects; symbolic links are not followed. Paths (relative to the working
        directory, "dir/name") that the regex `left_out` finds stay out: the platform's form of the
        paths it matches is not documented, and this is the likeliest one."""
        if self.s3 is None or not task.result_bucket:
            return
        skipped = re.compile(left_out).search if left_out else (lambda _path: None)
        for instance in task.instances:
            root = instance.workdir
            if root is None:
                continue
            for folder, folders, files in os.walk(root):
                relative = Path(folder).relative_to(root).as_posix()
                prefix = "" if relative == "." else relative + "/"
                if prefix and not folders and not files and not skipped(relative):
                    self.s3.put_object(Bucket=task.result_bucket, Key=prefix, Body=b"")
                for name in files:
                    path = Path(folder) / name
                    if stat.S_ISREG(path.lstat().st_mode) and not skipped(prefix + name):
                        self.s3.upload_file(str(path), task.result_bucket, prefix + name)

    def take_snapshot(self, task: FakeTask, left_out: str = "") -> str:
        """An instant snapshot: InProgress for upload_seconds, then the upload, then Success. Harsh
        reading of an unknown: only its own blacklist applies, not the task's."""
        snapshot_id = str(uuid.uuid4())
        task.snapshots[snapshot_id] = "InProgress"

        def upload() -> None:
            time.sleep(self.upload_seconds)
            self.upload_results(task, left_out)
            task.snapshots[snapshot_id] = "Success"

        threading.Thread(target=upload, daemon=True).start()
        return snapshot_id

    def snapshot_periodically(self, task: FakeTask, interval: int, left_out: str = "") -> None:
        task.snapshot_interval = interval

        def loop() -> None:
            while not self.closing.wait(interval) and task.state not in ENDING_STATES | {"PendingDelete"}:
                if task.state == "FullyExecuting":
                    self.upload_results(task, left_out)

        threading.Thread(target=loop, daemon=True).start()

    def abort(self, task: FakeTask) -> None:
        """The containers stop; with uploadResultsOnCancellation, the task is UploadingResults for
        upload_seconds, uploads, and is Cancelled."""
        self._remove_containers(task)
        if not (task.upload_results_on_cancellation and task.result_bucket and self.s3 is not None):
            task.state = "Cancelled"
            return
        task.state = "UploadingResults"

        def upload() -> None:
            time.sleep(self.upload_seconds)
            self.upload_results(task, task.results_blacklist)
            with self.lock:
                if task.state == "UploadingResults":
                    task.state = "Cancelled"

        threading.Thread(target=upload, daemon=True).start()

    def _fail(self, task: FakeTask, code: str, message: str) -> None:
        with self.lock:
            if task.state != "FullyDispatched":  # aborted, ended or deleted meanwhile: that stands
                return
            task.state = "Failure"
            task.errors.append({"code": code, "message": message, "debug": ""})

    def _remove_container(self, instance: Instance) -> None:
        if instance.container_id:
            for stream in ("stdout", "stderr"):
                instance.earlier[stream] += self._logged(instance, stream)
            with contextlib.suppress(DockerException):
                self.client.containers.get(instance.container_id).remove(force=True)
        instance.container_id, instance.port = "", 0

    def _remove_containers(self, task: FakeTask) -> None:
        for instance in task.instances:
            self._remove_container(instance)

    # --- output: lagging, bounded ------------------------------------------------------------------

    def _logged(self, instance: Instance, stream: str) -> list[Entry]:
        """What the instance's current container wrote on the stream, with the engine's timestamps."""
        if not instance.container_id:
            return []
        try:
            raw = self.client.containers.get(instance.container_id).logs(
                stdout=stream == "stdout", stderr=stream == "stderr", timestamps=True
            )
        except DockerException:
            return []
        return _entries(raw.decode("utf-8", "replace"))

    def _history(self, instance: Instance, stream: str) -> str:
        """All of the instance's output on the stream that is at least output_lag_seconds old."""
        horizon = time.time() - self.output_lag_seconds
        entries = instance.earlier[stream] + self._logged(instance, stream)
        return "".join(text for _, text in itertools.takewhile(lambda e: e[0] <= horizon, entries))

    def _bounded(self, text: str) -> str:
        """Only the last output_limit_bytes: the real output is a circular buffer."""
        data = text.encode()
        return data[max(0, len(data) - self.output_limit_bytes) :].decode("utf-8", "ignore")

    def output(self, task: FakeTask, index: int | None, *, stdout: bool, fresh: bool = False) -> str:
        """GET (all that the buffer holds) or, with `fresh`, POST (what is new since the last POST to
        the same route, which it consumes) of an instance's output, or of all, prefixed "N> "."""
        stream = "stdout" if stdout else "stderr"
        text = ""
        with self.lock:
            for instance in task.instances if index is None else [task.instances[index]]:
                history = self._history(instance, stream)
                if fresh:
                    key = (stream, index, instance.index)
                    seen = task.fresh_offsets.get(key, 0)
                    task.fresh_offsets[key] = len(history)
                    history = history[seen:]
                own = self._bounded(history)
                text += (
                    own
                    if index is not None
                    else "".join(f"{instance.index}> {line}\n" for line in own.splitlines())
                )
        return text

    # --- the task document the SDK parses ----------------------------------------------------------

    def settle_batch(self, task: FakeTask) -> None:
        """A task without ssh (its command is the task) ends when every instance's command has:
        Success if each exited 0, else Failure."""
        if task.state != "FullyExecuting" or "ssh" in task.profile.split("-"):
            return
        codes = []
        for instance in task.instances:
            with contextlib.suppress(DockerException):
                state = self.client.containers.get(instance.container_id).attrs["State"]
                codes.append(state["ExitCode"] if state["Status"] == "exited" else None)
        if len(codes) == len(task.instances) and None not in codes:
            self.end_task(task.uuid, "Success" if not any(codes) else "Failure")

    def document(self, task: FakeTask) -> dict[str, Any]:
        self.settle_batch(task)
        executing = task.state == "FullyExecuting"
        forwards_shown = executing and time.monotonic() >= task.forwards_from
        status = None
        if executing:
            status = {
                "executionTimeByCpuModel": [], "executionTimeGhzByCpuModel": [],
                "runningInstancesInfo": {
                    "timestamp": _date(datetime.now(timezone.utc)),
                    "perRunningInstanceInfo": [
                        {
                            "instanceId": instance.index, "phase": "execution",
                            "executionAttemptCount": instance.attempts,
                            "activeForwards": [
                                {"applicationPort": 22, "forwarderPort": instance.port,
                                 "forwarderHost": "127.0.0.1", "bindAddress": "0.0.0.0"}
                            ] if forwards_shown and instance.port else [],
                            "vpnConnections": [],
                        }
                        for instance in task.instances
                    ],
                },
            }  # fmt: skip
        return {
            "uuid": task.uuid, "name": task.name, "shortname": task.uuid, "profile": task.profile,
            "poolUuid": None, "jobUuid": None, "instanceCount": task.instance_count, "state": task.state,
            "creationDate": _date(task.created), "errors": task.errors,
            "constants": [{"key": k, "value": v} for k, v in self.visible_constants(task).items()],
            "tags": task.tags, "resourceBuckets": [],
            "advancedResourceBuckets": [{"bucketName": name} for name in task.resource_buckets],
            "resultBucket": task.result_bucket or None,
            "uploadResultsOnCancellation": task.upload_results_on_cancellation,
            "snapshotInterval": task.snapshot_interval, "completedInstances": [],
            "snapshotBlacklist": task.snapshot_blacklist or None,
            "resultsBlacklist": task.results_blacklist or None,
            "hardwareConstraints": task.hardware, "status": status,
            **({"schedulingType": task.scheduling} if task.scheduling else {}),
            **({"maxTimeQueueSeconds": task.max_time_queue} if task.max_time_queue is not None else {}),
            "runningInstanceCount": task.instance_count if executing else 0,
            "runningCoreCount": 2 * task.instance_count if executing else 0,
        }  # fmt: skip

    def credits(self, task: FakeTask) -> float:
        return round((time.monotonic() - task.executing_since) * 0.0001, 6) if task.executing_since else 0.0

    # --- faults that the handler consumes ----------------------------------------------------------

    def take_hang(self, method: str, path: str) -> bool:
        with self.lock:
            wanted = any(re.fullmatch(p, f"{method} {path}") for p in self.faults.hang_paths)
            if wanted and self.faults.hang_next > 0:
                self.faults.hang_next -= 1
                return True
            return False

    def take_creation_refusal(self) -> tuple[int, int | None] | None:
        """(status, Retry-After) for a POST /tasks to refuse, or None."""
        with self.lock:
            faults, now = self.faults, time.monotonic()
            if now < faults.refused_until:
                return 503, max(1, round(faults.refused_until - now))
            if not faults.create_refusals:
                return None
            status = faults.create_refusals.pop(0)
            if faults.create_retry_after is not None:
                faults.refused_until = now + faults.create_retry_after
            return status, faults.create_retry_after

    def take_creation_drop(self, *, after: bool) -> bool:
        with self.lock:
            left = self.faults.drop_after_create if after else self.faults.drop_before_create
            if left <= 0:
                return False
            if after:
                self.faults.drop_after_create -= 1
            else:
                self.faults.drop_before_create -= 1
            return True

    def is_listed_yet(self, task: FakeTask) -> bool:
        """A new task shows in listings only `listing_lag` seconds after its creation."""
        age = (datetime.now(timezone.utc) - task.created).total_seconds()
        return age >= self.faults.listing_lag

    def take_gateway_error(self) -> int:
        with self.lock:
            if self.faults.gateway_error_after_create and self.faults.gateway_error_times > 0:
                self.faults.gateway_error_times -= 1
                return self.faults.gateway_error_after_create
            return 0


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def substitute(value: str, names: Mapping[str, str]) -> str:
    """Qarnot's ${NAME} substitution, in one pass over the value as written.

    Harsh reading of an unknown: a placeholder that is not exactly a known name (an unknown name,
    a shell form such as ${VAR:-default}) becomes the empty string, so that nothing relies on a
    shell seeing it. `$NAME` without braces is left alone.
    """
    return _PLACEHOLDER.sub(lambda match: names.get(match.group(1), ""), value)


def constants_problem(constants: list[Any]) -> str | None:
    """Why the API refuses these constants (its documented limits), or None."""
    if len(constants) > MAX_CONSTANTS:
        return f"Too many constants: {len(constants)} (at most {MAX_CONSTANTS})"
    for item in constants:
        key, value = (item.get("key"), item.get("value")) if isinstance(item, dict) else (None, None)
        if key is None or value is None:
            return "A constant's key and value cannot be null"
        if not isinstance(key, str) or not CONSTANT_KEY.fullmatch(key):
            return f"Invalid constant key {str(key)[:40]!r}: only a-z A-Z 0-9 _ - . are allowed"
        if len(key) > MAX_CONSTANT_LENGTH or len(str(value)) > MAX_CONSTANT_LENGTH:
            return f"Constant {key[:40]!r}: key and value are at most {MAX_CONSTANT_LENGTH} characters"
    return None


def organization_quotas(organization: dict[str, Any] | None, mine: dict[str, dict[str, int]]) -> Any:
    """The organisation's part of computingQuotas: its other users' use plus this user's `mine`."""
    if organization is None:
        return None

    def plan(quota: dict[str, Any], own: dict[str, int]) -> dict[str, Any]:
        return {
            **quota, **{count: quota.get(count, 0) + own.get(count, 0) for count in RUNNING_COUNTS}
        }  # fmt: skip

    return {
        "name": organization.get("name"),
        "flex": plan(organization["flex"], mine["flex"]),
        "onDemand": plan(organization["onDemand"], mine["onDemand"]),
        "reserved": [plan(reservation, {}) for reservation in organization.get("reserved", [])],
    }


def hardware_problem(body: dict[str, Any], account: Account) -> str | None:
    """Why no offer of the account satisfies a submitted hardware constraint (Qarnot answers 402 with
    "hardware constraint" in the message, qarnot/task.py). Harsh reading of an unknown: offers are
    discrete, and a value that is not one of them is refused rather than rounded to one."""
    for constraint in body.get("hardwareConstraints", []):
        kind = constraint["discriminator"]
        wanted = HARDWARE_FIELDS[kind]
        offered = [offer for offer in account.hardware if offer["discriminator"] == kind]
        if wanted is None and offered:
            continue
        if wanted in {"coreCount", "minimumMemoryMB", "maximumMemoryMB"}:
            if any(float(offer[wanted]) == float(constraint[wanted]) for offer in offered):
                continue
        elif wanted is not None and any(offer.get(wanted) == constraint.get(wanted) for offer in offered):
            continue
        value = "" if wanted is None else f" {constraint[wanted]}"
        return f"No machine of the account satisfies the hardware constraint {kind}{value}"
    return None


def worker_problem(body: dict[str, Any], account: Account) -> str | None:
    """Why the API refuses the task's profile, hardware constraints, scheduling type or time in
    queue, or None. Harsh reading of an unknown: a profile the account does not list is refused."""
    if body["profile"] not in account.profiles:
        return f"Unknown profile: {str(body['profile'])[:60]}"
    constraints = body.get("hardwareConstraints", [])
    if not isinstance(constraints, list):
        return "hardwareConstraints must be a list"
    for constraint in constraints:
        kind = constraint.get("discriminator") if isinstance(constraint, dict) else None
        if kind not in HARDWARE_FIELDS:
            return f"Unknown hardware constraint: {str(kind)[:60]}"
        wanted = HARDWARE_FIELDS[kind]
        if set(constraint) != {"discriminator"} | ({wanted} if wanted else set()):
            return f"{kind}: unexpected fields {sorted(constraint)}"
        value = constraint.get(wanted) if wanted else None
        if wanted == "coreCount" and not (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        ):
            return f"{kind}: {wanted} must be a whole number above 0"
        if wanted in {"minimumMemoryMB", "maximumMemoryMB"} and not (
            isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")
        ):  # MB, a number (Qarnot's offers are floats: 32000.0)
            return f"{kind}: {wanted} must be a number above 0"
        if wanted in {"specificationKey", "cpuModel"} and not (isinstance(value, str) and value):
            return f"{kind}: {wanted} must be a non-empty string"
    if body.get("schedulingType", "Flex") not in SCHEDULING_TYPES:
        return f"Unknown scheduling type: {str(body.get('schedulingType'))[:60]}"
    # Harsh reading of an unknown: Reserved needs a reservation of the account, by name.
    target = body.get("targetedReservationName")
    if body.get("schedulingType") == "Reserved" and target not in {
        r["reservationName"] for r in account.reserved
    }:
        return f"Unknown reservation: {str(target)[:60]}"
    queue = body.get("maxTimeQueueSeconds")
    if queue is not None and not (isinstance(queue, int) and not isinstance(queue, bool) and queue > 0):
        return "maxTimeQueueSeconds must be a whole number above 0"
    return None


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z ([^\n]*\n?)", re.MULTILINE)


def _entries(logs: str) -> list[Entry]:
    """The engine's `logs(timestamps=True)`: each line starts with its RFC 3339 UTC time."""
    return [
        (calendar.timegm(time.strptime(match[1], "%Y-%m-%dT%H:%M:%S")) + float(match[2] or 0), match[3])
        for match in _LOG_LINE.finditer(logs)
    ]


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_TASK = re.compile(r"/tasks/([0-9a-f-]{36})(/(stdout|stderr|abort)(/(\d+))?)?")
_SNAPSHOT = re.compile(r"/tasks/([0-9a-f-]{36})/snapshot(/([0-9a-z-]{1,64}))?")


def bucket_names(body: dict[str, Any]) -> list[str]:
    """The resource buckets of a task as the SDK sends them: advanced ones (objects), or plain names."""
    advanced = [str(item.get("bucketName")) for item in body.get("advancedResourceBuckets") or []]
    return advanced + [str(name) for name in body.get("resourceBuckets") or []]


def _handler(fake: FakeQarnot) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: with Nagle's algorithm the body waits for the client's
        # delayed ACK of the headers, 40 ms on every reply, which the real service does not add.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            path = re.sub(r"/+", "/", path)
            self.query = {key: values[-1] for key, values in parse_qs(query).items()}
            path = path[3:] if path.startswith("/v1/") else path
            with fake.lock:
                fake.requests.append((method, path))
                fake.request_times.append(time.monotonic())
            if fake.take_hang(method, path):
                fake.closing.wait(fake.faults.hang_seconds)
                self._drop()
                return
            time.sleep(fake.faults.slow_seconds)
            if self.headers.get("Authorization") != fake.token:
                self._reply(401, {"message": "Unauthorized: invalid token"})
                return
            is_task_read = method == "GET" and _TASK.fullmatch(path) is not None
            if is_task_read and fake.faults.drop_connections > 0:
                fake.faults.drop_connections -= 1
                self._drop()
                return
            if is_task_read and fake.faults.status_while_uploading and fake.uploading(path):
                self._reply(fake.faults.status_while_uploading, {"message": "busy (injected)"})
                return
            if is_task_read and fake.faults.status_burst:
                self._reply(fake.faults.status_burst.pop(0), {"message": "slow down (injected)"})
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._reply(400, {"message": "Malformed JSON body"})
                return
            with fake.lock:
                fake.bodies.append((method, path, body))
            self._route(method, path, body)

        def _route(self, method: str, path: str, body: Any) -> None:
            if (method, path) == ("GET", "/settings") and fake.faults.settings_errors:
                self._reply(fake.faults.settings_errors.pop(0), {"message": "Service Unavailable (injected)"})
            elif (method, path) == ("GET", "/settings"):
                self._reply(200, {"storage": fake.storage_url})
            elif (method, path) == ("GET", "/info"):
                self._reply(200, fake.user_info())
            elif (method, path) == ("GET", "/profiles"):
                self._reply(200, fake.account.profiles)
            elif (method, path) == ("GET", "/hardware-constraints"):
                self._hardware()
            elif (method, path) == ("GET", "/credits/v1/accounts/credits"):
                self._account_credits()
            elif (method, path) == ("POST", "/tasks"):
                self._submit(body)
            elif method == "POST" and path in {"/tasks/paginate", "/tasks/summaries/paginate"}:
                self._page(body or {})
            elif method == "GET" and path.startswith("/credits/v1/tasks/"):
                self._credits(path.split("/")[4])
            elif match := _SNAPSHOT.fullmatch(path):
                self._snapshot(method, match.group(1), match.group(3), body)
            elif match := _TASK.fullmatch(path):
                self._task(method, match.group(1), match.group(3), match.group(5))
            else:
                self._reply(404, {"message": f"No route for {method} {path}"})

        def _submit(self, body: Any) -> None:
            refusal = fake.take_creation_refusal()
            if refusal is not None:
                self._refuse(*refusal)
                return
            if fake.take_creation_drop(after=False):
                self._drop()
                return
            missing = [key for key in REQUIRED_FIELDS if not isinstance(body, dict) or key not in body]
            if missing:
                self._reply(400, {"message": f"Missing field(s): {', '.join(missing)}"})
                return
            if not isinstance(body["constants"], list) or int(body["instanceCount"]) < 1:
                self._reply(400, {"message": "constants must be a list and instanceCount at least 1"})
                return
            problem = constants_problem(body["constants"]) or worker_problem(body, fake.account)
            if problem:
                self._reply(400, {"message": problem})
                return
            unoffered = hardware_problem(body, fake.account)
            if unoffered and fake.unoffered_ram == "refuse":  # the SDK reads "hardware constraint" in a 402
                self._reply(402, {"message": unoffered})
                return
            wanted = bucket_names(body) + ([str(body["resultBucket"])] if body.get("resultBucket") else [])
            if wanted and fake.s3 is None:
                self._reply(400, {"message": "Bucket storage is not available"})
                return
            existing = {b["Name"] for b in fake.s3.list_buckets()["Buckets"]} if wanted else set()
            missing = [name for name in wanted if name not in existing]
            if missing:
                self._reply(404, {"message": f"Bucket not found: {missing[0]}"})
                return
            with fake.lock:
                # The task quota, with the message the SDK turns into MaxTaskException.
                if len(fake.tasks) >= fake.account.max_tasks:
                    self._reply(403, {"message": "Maximum number of tasks reached"})
                    return
                task = fake.submit(body, held=unoffered is not None)
            if fake.take_creation_drop(after=True):
                self._drop()
                return
            status = fake.take_gateway_error()
            if status:
                self._reply(status, {"message": "Gateway Timeout (injected, after the task was created)"})
                return
            self._reply(200, {"uuid": task.uuid})

        def _page(self, body: dict[str, Any]) -> None:
            wanted = (body.get("filter") or {}).get("value")
            with fake.lock:
                matching = [
                    t for t in fake.listed() if (wanted is None or wanted in t.tags) and fake.is_listed_yet(t)
                ]
                start = int(body.get("token") or 0)
                page = [fake.document(task) for task in matching[start : start + PAGE_SIZE]]
            more = start + PAGE_SIZE < len(matching)
            self._reply(200, {
                "data": page, "token": str(start),
                "nextToken": str(start + PAGE_SIZE) if more else None, "isTruncated": more,
            })  # fmt: skip

        def _snapshot(self, method: str, task_id: str, which: str | None, body: Any) -> None:
            task = fake.find(task_id)
            if task is None:
                self._reply(*_missing(task_id))
            elif method == "GET" and which is not None and which in task.snapshots:
                self._reply(200, {
                    "id": which, "taskUuid": task.uuid, "status": task.snapshots[which],
                    "triggerDate": _date(datetime.now(timezone.utc)), "snapshotConfig": None,
                })  # fmt: skip
            elif method != "POST" or which not in {None, "periodic"}:
                self._reply(404, {"message": f"No such snapshot: {which}"})
            elif (
                task.state in ENDING_STATES
                or task.state == "PendingDelete"
                or (
                    which is None and task.state != "FullyExecuting"  # periodic ones start with the task
                )
            ):
                self._reply(403, {"message": f"Task is {task.state}: it cannot be snapshot"})
            elif not task.result_bucket or (isinstance(body, dict) and body.get("bucket")):
                # Harsh: a bucket other than the task's own is not supported by the fake.
                self._reply(400, {"message": "The task has no result bucket to snapshot into"})
            elif which == "periodic":
                interval = body.get("interval") if isinstance(body, dict) else None
                if not isinstance(interval, int) or interval <= 0:
                    self._reply(400, {"message": f"Invalid snapshot interval: {interval}"})
                    return
                if fake.faults.periodic_snapshot_refused:
                    self._reply(500, {"message": "Internal Server Error (injected)"})
                    return
                fake.snapshot_periodically(task, interval, _blacklist(body))
                self._reply_empty()
            else:
                self._reply(200, {"id": fake.take_snapshot(task, _blacklist(body))})

        def _hardware(self) -> None:
            """An offset page, as the SDK's hardware_constraints_page reads it."""
            try:
                limit, offset = int(self.query.get("limit", "50")), int(self.query.get("offset", "0"))
            except ValueError:
                self._reply(400, {"message": "limit and offset must be numbers"})
                return
            offered = fake.account.hardware
            page = offered[offset : offset + max(limit, 0)]
            self._reply(200, {"data": page, "total": len(offered), "limit": limit, "offset": offset})

        def _account_credits(self) -> None:
            if fake.faults.credits_unavailable:
                self._reply(503, {"message": "Service Unavailable (injected)"})
            else:
                self._reply(200, {"credits": fake.account.balance})

        def _credits(self, task_id: str) -> None:
            task = fake.find(task_id)
            if task is None:
                self._reply(*_missing(task_id))
            elif fake.faults.credits_unavailable:
                self._reply(503, {"message": "Service Unavailable (injected)"})
            else:
                self._reply(200, {"credits": fake.credits(task)})

        def _task(self, method: str, task_id: str, action: str | None, instance: str | None) -> None:
            task = fake.find(task_id)
            if task is None:
                self._reply(*_missing(task_id))
                return
            if action in {"stdout", "stderr"} and method in {"GET", "POST"}:
                index = int(instance) if instance is not None else None
                if index is not None and index >= task.instance_count:
                    self._reply(404, {"message": f"No such instance: {index}"})
                    return
                self._reply_text(fake.output(task, index, stdout=action == "stdout", fresh=method == "POST"))
            elif action == "abort" and method == "POST":
                with fake.lock:
                    # Harsh reading: every ending state, not only the finished ones, refuses an abort.
                    if task.state in ENDING_STATES or task.state == "PendingDelete":
                        self._reply(403, {"message": f"Task is {task.state}: it cannot be aborted"})
                        return
                    fake.abort(task)
                self._reply_empty()
            elif action is None and method == "GET":
                with fake.lock:
                    hidden = task.hidden_reads > 0
                    if hidden:
                        task.hidden_reads -= 1
                    document = fake.document(task)
                self._reply(*(_missing(task_id) if hidden else (200, document)))
            elif action is None and method == "DELETE":
                # Harsh reading of an unknown: deleting a task already in PendingDelete is a 404.
                if task.state == "PendingDelete":
                    self._reply(*_missing(task_id))
                    return
                if task_id in fake.faults.delete_refused:
                    self._reply(500, {"message": "Internal Server Error (injected)"})
                    return
                fake.delete(task)
                self._reply_empty()
            else:
                self._reply(405, {"message": f"{method} not allowed here"})

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)

        def _reply(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _refuse(self, status: int, retry_after: int | None) -> None:
            data = json.dumps({"message": "Too many requests" if status == 429 else "Service Unavailable"})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

        def _reply_text(self, text: str) -> None:
            self._send(200, text.encode(), "text/plain; charset=utf-8")

        def _reply_empty(self) -> None:
            self._send(200, b"", "text/plain")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _blacklist(body: Any) -> str:
    """The `blacklist` regex of a snapshot request ("" when none)."""
    value = body.get("blacklist") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def _missing(task_id: str) -> tuple[int, dict[str, str]]:
    return 404, {"message": f"No such task: {task_id}"}
