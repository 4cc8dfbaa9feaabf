"""Tasks: submitted, really run in the Docker engine, read, listed, aborted and deleted.

A submitted task is pulled from DOCKER_SRV/DOCKER_REPO:DOCKER_TAG with the given registry
credentials, then runs one container per instance with the constants as environment, DOCKER_CMD
as command and DOCKER_USER as user; port 22 is published on 127.0.0.1 and reported as the
instance's active forward. On a cluster profile (docker-cluster-network-ssh and the like) instance 0
is the master: it runs DOCKER_CMD_MASTER and is the only one forwarded; the others run
DOCKER_CMD_WORKER. Only profiles with ssh in their name forward port 22; a task of another profile
(a batch task: its command is the task) ends Success or Failure when all its containers exited.

As harsh as the real service where it is known to be harsher: constants are checked against the
API's limits; `QARNOT_SECRET__` constants read back as `[SECRET]`; `${NAME}` in constants is
substituted before the container starts; a deleted task lingers in PendingDelete before GET says
404; the output lags behind the container and is a bounded buffer.
"""

from __future__ import annotations

import calendar
import contextlib
import itertools
import re
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from docker.errors import DockerException

from tests.fakes.qarnot import account, storage
from tests.fakes.qarnot.model import ENDING_STATES, Entry, FakeTask, Instance
from tests.fakes.qarnot.replies import (
    DROP,
    EMPTY,
    Answer,
    Request,
    api_date,
    json_reply,
    missing,
    of_task,
    text_reply,
)

if TYPE_CHECKING:
    from tests.fakes.qarnot.server import FakeQarnot

FAKE_LABEL = "io.qimg.fake-qarnot-task"
PAGE_SIZE = 2  # small, so that listing exercises the SDK's pagination
REQUIRED_FIELDS = ("name", "profile", "instanceCount", "constants")
# The API model's limits on constants.
MAX_CONSTANTS = 150
MAX_CONSTANT_LENGTH = 2048
CONSTANT_KEY = re.compile(r"[A-Za-z0-9_.-]+")
SECRET_PREFIX = "QARNOT_SECRET__"
SECRET_SHOWN = "[SECRET]"


def is_cluster(profile: str) -> bool:
    return "cluster" in profile.split("-")


# --- routes ----------------------------------------------------------------------------------------


def create(fake: FakeQarnot, request: Request) -> Answer:
    """POST /tasks: checked as the API does, then submitted; creation faults before and after."""
    body = request.body
    with fake.lock:
        refusal = fake.faults.take_creation_refusal()
        dropped = refusal is None and fake.faults.take_creation_drop(after=False)
    if refusal is not None:
        status, retry_after = refusal
        message = "Too many requests" if status == 429 else "Service Unavailable"
        return json_reply(status, {"message": message}, retry_after)
    if dropped:
        return DROP
    absent = [key for key in REQUIRED_FIELDS if not isinstance(body, dict) or key not in body]
    if absent:
        return json_reply(400, {"message": f"Missing field(s): {', '.join(absent)}"})
    if not isinstance(body["constants"], list) or int(body["instanceCount"]) < 1:
        return json_reply(400, {"message": "constants must be a list and instanceCount at least 1"})
    problem = constants_problem(body["constants"]) or account.worker_problem(body, fake.account)
    if problem:
        return json_reply(400, {"message": problem})
    unoffered = account.hardware_problem(body, fake.account)
    if unoffered and fake.unoffered_ram == "refuse":  # the SDK reads "hardware constraint" in a 402
        return json_reply(402, {"message": unoffered})
    no_buckets = storage.buckets_problem(fake, body)
    if no_buckets:
        return no_buckets
    with fake.lock:
        # The task quota, with the message the SDK turns into MaxTaskException.
        if len(fake.tasks) >= fake.account.max_tasks:
            return json_reply(403, {"message": "Maximum number of tasks reached"})
        task = submit(fake, body, held=unoffered is not None)
    with fake.lock:
        dropped = fake.faults.take_creation_drop(after=True)
        status = 0 if dropped else fake.faults.take_gateway_error()
    if dropped:
        return DROP
    if status:
        return json_reply(status, {"message": "Gateway Timeout (injected, after the task was created)"})
    return json_reply(200, {"uuid": task.uuid})


def page(fake: FakeQarnot, request: Request) -> Answer:
    """POST /tasks/paginate and /tasks/summaries/paginate: PAGE_SIZE tasks, filtered by a tag."""
    body = request.body or {}
    wanted = (body.get("filter") or {}).get("value")
    with fake.lock:
        matching = [
            t for t in fake.listed() if (wanted is None or wanted in t.tags) and fake.is_listed_yet(t)
        ]
        start = int(body.get("token") or 0)
        documents = [document(fake, task) for task in matching[start : start + PAGE_SIZE]]
    more = start + PAGE_SIZE < len(matching)
    return json_reply(200, {
        "data": documents, "token": str(start),
        "nextToken": str(start + PAGE_SIZE) if more else None, "isTruncated": more,
    })  # fmt: skip


@of_task
def read(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    with fake.lock:
        hidden = task.hidden_reads > 0
        if hidden:
            task.hidden_reads -= 1
        read_back = document(fake, task)
    return missing(task.uuid) if hidden else json_reply(200, read_back)


@of_task
def read_output(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    instance = request.params["instance"]
    index = int(instance) if instance is not None else None
    if index is not None and index >= task.instance_count:
        return json_reply(404, {"message": f"No such instance: {index}"})
    stdout, fresh = request.params["stream"] == "stdout", request.method == "POST"
    return text_reply(output(fake, task, index, stdout=stdout, fresh=fresh))


@of_task
def cancel(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    with fake.lock:
        # Harsh reading: every ending state, not only the finished ones, refuses an abort.
        if task.state in ENDING_STATES or task.state == "PendingDelete":
            return json_reply(403, {"message": f"Task is {task.state}: it cannot be aborted"})
        abort(fake, task)
    return EMPTY


@of_task
def remove(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    # Harsh reading of an unknown: deleting a task already in PendingDelete is a 404.
    if task.state == "PendingDelete":
        return missing(task.uuid)
    if task.uuid in fake.faults.delete_refused:
        return json_reply(500, {"message": "Internal Server Error (injected)"})
    delete(fake, task)
    return EMPTY


@of_task
def not_allowed(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    return json_reply(405, {"message": f"{request.method} not allowed here"})


@of_task
def read_credits(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    if fake.faults.credits_unavailable:
        return json_reply(503, {"message": "Service Unavailable (injected)"})
    return json_reply(200, {"credits": credits(task)})


# --- task life -------------------------------------------------------------------------------------


def submit(fake: FakeQarnot, body: dict[str, Any], *, held: bool = False) -> FakeTask:
    constants = {str(c["key"]): str(c["value"]) for c in body["constants"]}  # values may be numbers
    task = FakeTask(
        str(uuid.uuid4()), str(body["name"]), str(body["profile"]), int(body["instanceCount"]),
        constants, [str(tag) for tag in body.get("tags") or []], datetime.now(timezone.utc),
        resource_buckets=storage.bucket_names(body), result_bucket=str(body.get("resultBucket") or ""),
        upload_results_on_cancellation=bool(body.get("uploadResultsOnCancellation")),
        hardware=list(body.get("hardwareConstraints") or []), scheduling=body.get("schedulingType"),
        max_time_queue=body.get("maxTimeQueueSeconds"), held=held,
        snapshot_blacklist=str(body.get("snapshotBlacklist") or ""),
        results_blacklist=str(body.get("resultsBlacklist") or ""),
    )  # fmt: skip
    task.instances = [Instance(index) for index in range(task.instance_count)]
    with fake.lock:
        task.hidden_reads = fake.faults.take_hidden_read()
        fake.tasks[task.uuid] = task
    threading.Thread(target=run, args=(fake, task), daemon=True).start()
    return task


def run(fake: FakeQarnot, task: FakeTask) -> None:
    fake.closing.wait(0.2 + fake.faults.queue_seconds)  # Submitted: in the queue
    with fake.lock:
        if task.state != "Submitted" or task.held:
            return
        task.state = "FullyDispatched"
    if fake.faults.failure:
        code, message = fake.faults.failure
        fail(fake, task, code, message)
        return
    srv = task.constants.get("DOCKER_SRV", "https://registry-1.docker.io")
    repository = f"{re.sub(r'^https?://', '', srv).rstrip('/')}/{task.constants.get('DOCKER_REPO', '')}"
    login = task.constants.get("DOCKER_REGISTRY_LOGIN")
    # Qarnot's samples send the password as a secret; the plain constant works too.
    password = task.constants.get(
        f"{SECRET_PREFIX}DOCKER_REGISTRY_PASSWORD", task.constants.get("DOCKER_REGISTRY_PASSWORD", "")
    )
    try:
        fake.client.images.pull(
            repository,
            tag=task.constants.get("DOCKER_TAG", "latest"),
            auth_config={"username": login, "password": password} if login else None,
        )
    except DockerException as error:
        fail(fake, task, "PullFailed", f"cannot pull {repository}: {str(error)[:300]}")
        return
    with fake.lock:
        if task.state != "FullyDispatched" or fake.closing.is_set():
            return
        try:
            for instance in task.instances:
                start_instance(fake, task, instance)
        except DockerException as error:
            remove_containers(fake, task)
            fail(fake, task, "StartFailed", str(error)[:300])
            return
        task.state = "FullyExecuting"
        task.executing_since = time.monotonic()
        task.forwards_from = time.monotonic() + fake.faults.forward_delay


def environment(fake: FakeQarnot, task: FakeTask, instance: Instance) -> dict[str, str]:
    """What the instance's container gets: constants with ${NAME} substituted, secrets in clear."""
    # The name under which the platform passes a secret into the container is unknown: the fake
    # passes it under both its full key and the bare name. A constant of that bare name wins.
    secrets = {
        key.removeprefix(SECRET_PREFIX): value
        for key, value in task.constants.items()
        if key.startswith(SECRET_PREFIX) and key != SECRET_PREFIX and fake.secret_bare_name
    }
    platform = {"INSTANCE_ID": str(instance.index)}  # the profile sets it, over any constant
    # INSTANCE_COUNT is documented as substituted only, so it is not in the environment.
    names = {**task.constants, **platform, "INSTANCE_COUNT": str(task.instance_count)}
    raw = {**secrets, **task.constants, **platform}
    return {key: substitute(value, names) for key, value in raw.items()}


def start_instance(fake: FakeQarnot, task: FakeTask, instance: Instance, avoid_port: int = 0) -> None:
    srv = re.sub(r"^https?://", "", task.constants.get("DOCKER_SRV", "")).rstrip("/")
    image = f"{srv}/{task.constants['DOCKER_REPO']}:{task.constants.get('DOCKER_TAG', 'latest')}"
    variables = environment(fake, task, instance)
    cluster = is_cluster(task.profile)
    role = "DOCKER_CMD"
    if cluster:
        role = "DOCKER_CMD_MASTER" if instance.index == 0 else "DOCKER_CMD_WORKER"
    # Only profiles with ssh in their name forward port 22, and of a cluster only its master.
    forwarded = "ssh" in task.profile.split("-") and (not cluster or instance.index == 0)
    mounts = {}
    if fake.s3 is not None:
        workdir = variables.get("DOCKER_WORKDIR") or "/job"
        mounts = {str(storage.fresh_workdir(fake, task, instance)): {"bind": workdir, "mode": "rw"}}
    for _ in range(5):  # the engine may hand back the port just freed: a restart must move
        container = fake.client.containers.run(
            image, command=variables.get(role) or None, detach=True,
            environment=variables, user=variables.get("DOCKER_USER") or None,
            ports={"22/tcp": ("127.0.0.1", 0)} if forwarded else {}, labels={FAKE_LABEL: task.uuid},
            volumes=mounts,
        )  # fmt: skip
        fake.started.add(container.id or "")
        container.reload()
        published = container.attrs["NetworkSettings"]["Ports"].get("22/tcp")
        port = int(published[0]["HostPort"]) if published else 0  # none once the command has exited
        if not avoid_port or port != avoid_port:
            break
        container.remove(force=True)
    instance.container_id, instance.port = container.id or "", port
    instance.attempts += 1


def restart_instance(fake: FakeQarnot, task_id: str, index: int) -> None:
    """Preemption: the instance's container goes, a new one comes back on another port."""
    with fake.lock:
        task = fake.tasks[task_id]
        instance = task.instances[index]
        old_port = instance.port
        remove_container(fake, instance)
        start_instance(fake, task, instance, avoid_port=old_port)


def end_task(fake: FakeQarnot, task_id: str, state: str) -> None:
    """The task reaches an ending state: its containers stop (their output stays readable), and
    its working directories go to its result bucket."""
    if state not in ENDING_STATES:
        raise ValueError(f"{state} is not an ending state: {sorted(ENDING_STATES)}")
    with fake.lock:
        task = fake.tasks[task_id]
        remove_containers(fake, task)
        storage.upload_results(fake, task, task.results_blacklist)
        task.state = state


def settle_batch(fake: FakeQarnot, task: FakeTask) -> None:
    """A task without ssh (its command is the task) ends when every instance's command has:
    Success if each exited 0, else Failure."""
    if task.state != "FullyExecuting" or "ssh" in task.profile.split("-"):
        return
    codes = []
    for instance in task.instances:
        with contextlib.suppress(DockerException):
            state = fake.client.containers.get(instance.container_id).attrs["State"]
            codes.append(state["ExitCode"] if state["Status"] == "exited" else None)
    if len(codes) == len(task.instances) and None not in codes:
        end_task(fake, task.uuid, "Success" if not any(codes) else "Failure")


def abort(fake: FakeQarnot, task: FakeTask) -> None:
    """The containers stop; with uploadResultsOnCancellation, the task is UploadingResults for
    upload_seconds, uploads, and is Cancelled."""
    remove_containers(fake, task)
    if not (task.upload_results_on_cancellation and task.result_bucket and fake.s3 is not None):
        task.state = "Cancelled"
        return
    task.state = "UploadingResults"

    def upload() -> None:
        time.sleep(fake.upload_seconds)
        storage.upload_results(fake, task, task.results_blacklist)
        with fake.lock:
            if task.state == "UploadingResults":
                task.state = "Cancelled"

    threading.Thread(target=upload, daemon=True).start()


def delete(fake: FakeQarnot, task: FakeTask) -> None:
    """DELETE /tasks/{uuid}: the containers go at once (no results are uploaded), the task lingers
    in PendingDelete."""
    with fake.lock:
        fake.deleted_in.append(task.state)
        if fake.s3 is not None:
            existing = storage.existing_buckets(fake)
            mine = [*task.resource_buckets, *([task.result_bucket] if task.result_bucket else [])]
            fake.buckets_at_delete.append([name for name in mine if name in existing])
        remove_containers(fake, task)
        for instance in task.instances:
            storage.drop_workdir(instance)
        task.state = "PendingDelete"
        task.deleted_at = time.monotonic()
        del fake.tasks[task.uuid]
        fake.deleted[task.uuid] = task


def fail(fake: FakeQarnot, task: FakeTask, code: str, message: str) -> None:
    with fake.lock:
        if task.state != "FullyDispatched":  # aborted, ended or deleted meanwhile: that stands
            return
        task.state = "Failure"
        task.errors.append({"code": code, "message": message, "debug": ""})


def remove_container(fake: FakeQarnot, instance: Instance) -> None:
    if instance.container_id:
        for stream in ("stdout", "stderr"):
            instance.earlier[stream] += logged(fake, instance, stream)
        with contextlib.suppress(DockerException):
            fake.client.containers.get(instance.container_id).remove(force=True)
    instance.container_id, instance.port = "", 0


def remove_containers(fake: FakeQarnot, task: FakeTask) -> None:
    for instance in task.instances:
        remove_container(fake, instance)


# --- constants -------------------------------------------------------------------------------------

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


def visible_constants(task: FakeTask) -> dict[str, str]:
    """The constants as a reader of the API sees them: secrets are write-only."""
    return {k: SECRET_SHOWN if k.startswith(SECRET_PREFIX) else v for k, v in task.constants.items()}


# --- output: lagging, bounded ----------------------------------------------------------------------


def logged(fake: FakeQarnot, instance: Instance, stream: str) -> list[Entry]:
    """What the instance's current container wrote on the stream, with the engine's timestamps."""
    if not instance.container_id:
        return []
    try:
        raw = fake.client.containers.get(instance.container_id).logs(
            stdout=stream == "stdout", stderr=stream == "stderr", timestamps=True
        )
    except DockerException:
        return []
    return _entries(raw.decode("utf-8", "replace"))


def _history(fake: FakeQarnot, instance: Instance, stream: str) -> str:
    """All of the instance's output on the stream that is at least output_lag_seconds old."""
    horizon = time.time() - fake.output_lag_seconds
    entries = instance.earlier[stream] + logged(fake, instance, stream)
    return "".join(text for _, text in itertools.takewhile(lambda e: e[0] <= horizon, entries))


def _bounded(fake: FakeQarnot, text: str) -> str:
    """Only the last output_limit_bytes: the real output is a circular buffer."""
    data = text.encode()
    return data[max(0, len(data) - fake.output_limit_bytes) :].decode("utf-8", "ignore")


def output(fake: FakeQarnot, task: FakeTask, index: int | None, *, stdout: bool, fresh: bool = False) -> str:
    """GET (all that the buffer holds) or, with `fresh`, POST (what is new since the last POST to
    the same route, which it consumes) of an instance's output, or of all, prefixed "N> "."""
    stream = "stdout" if stdout else "stderr"
    text = ""
    with fake.lock:
        for instance in task.instances if index is None else [task.instances[index]]:
            history = _history(fake, instance, stream)
            if fresh:
                key = (stream, index, instance.index)
                seen = task.fresh_offsets.get(key, 0)
                task.fresh_offsets[key] = len(history)
                history = history[seen:]
            own = _bounded(fake, history)
            text += (
                own
                if index is not None
                else "".join(f"{instance.index}> {line}\n" for line in own.splitlines())
            )
    return text


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z ([^\n]*\n?)", re.MULTILINE)


def _entries(logs: str) -> list[Entry]:
    """The engine's `logs(timestamps=True)`: each line starts with its RFC 3339 UTC time."""
    return [
        (calendar.timegm(time.strptime(match[1], "%Y-%m-%dT%H:%M:%S")) + float(match[2] or 0), match[3])
        for match in _LOG_LINE.finditer(logs)
    ]


# --- the task document the SDK parses --------------------------------------------------------------


def document(fake: FakeQarnot, task: FakeTask) -> dict[str, Any]:
    settle_batch(fake, task)
    executing = task.state == "FullyExecuting"
    forwards_shown = executing and time.monotonic() >= task.forwards_from
    status = None
    if executing:
        status = {
            "executionTimeByCpuModel": [], "executionTimeGhzByCpuModel": [],
            "runningInstancesInfo": {
                "timestamp": api_date(datetime.now(timezone.utc)),
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
        "creationDate": api_date(task.created), "errors": task.errors,
        "constants": [{"key": k, "value": v} for k, v in visible_constants(task).items()],
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


def credits(task: FakeTask) -> float:
    return round((time.monotonic() - task.executing_since) * 0.0001, 6) if task.executing_since else 0.0
