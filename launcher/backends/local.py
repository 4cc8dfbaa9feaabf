"""The local backend: a qimg image run on the local Docker engine the way a Qarnot task runs it.

Each instance is a container that gets the task's constants as its environment and DOCKER_CMD as
its command, with port 22 published on 127.0.0.1 only. The containers' labels are the whole state:
`qimg ls` and `qimg stop` find tasks there, as they find them through Qarnot's API.

An engine may be shared, and everyone who can reach it sees every container: each task is labelled
with who launched it, and this backend sees only its caller's own tasks (another user's task id is
"no local task", for `ls`, `stop --all` and lookups by id alike).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import sys
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from qimg.builder.labels import PREFIX
from qimg.engine_api import Engine, EngineError, NotFound, labels_of
from qimg.errors import BackendError, LaunchFailed, TaskNotFound
from qimg.launcher import containers
from qimg.launcher.backends.base import (
    IDLE_STOP_CONSTANT,
    InstanceView,
    TaskRequest,
    TaskView,
    instance_command,
    is_cluster_profile,
)
from qimg.launcher.ssh import Endpoint

# A container as the engine inspects it (its labels under Config).
Container = dict[str, Any]

_INSTANCE = re.compile(r"[0-9]{1,2}")  # instance numbers, as submit labels them (at most 64 instances)
TASK_LABEL = f"{PREFIX}task"
NAME_LABEL = f"{PREFIX}task-name"
INSTANCE_LABEL = f"{PREFIX}instance"
LAUNCH_LABEL = f"{PREFIX}launch"
OWNER_LABEL = f"{PREFIX}owner"
# How many instances the request asked for: a task that lost one (its container removed by someone,
# `qimg stop --all` racing the launch) is not the smaller task that is left.
INSTANCES_LABEL = f"{PREFIX}instances"


def owner() -> str:
    """Who launches a local task: this process's uid and user name, as `id` writes them ("1000(alice)");
    on Windows, which has no uids, the user name."""
    if sys.platform == "win32":
        return getpass.getuser()
    import pwd

    uid = os.getuid()
    try:
        return f"{uid}({pwd.getpwuid(uid).pw_name})"
    except KeyError:  # a uid without a passwd entry, as in a container run with --user 12345
        return str(uid)


PROFILE_LABEL = f"{PREFIX}profile"
# "no" on a container whose port 22 is not reported, as Qarnot forwards only a cluster's master.
FORWARDED_LABEL = f"{PREFIX}forwarded"
# Containers started, or removed, at once: the engine sets up (or tears down) each one's network in
# its own time, and 8 instances take about half as long as one after another (`docker rm -f A B ...`
# removes several at once too).
AT_ONCE = 8


class LocalBackend:
    """Tasks on the local engine, one container per instance."""

    name: str  # what the registry calls it, set when it opens the backend

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine.from_env()
        self.owner = owner()

    def submit(self, request: TaskRequest) -> str:
        task_id = str(uuid.uuid4())
        cluster = is_cluster_profile(request.profile)

        def start(index: int) -> None:
            forwarded = request.entries is None or index in request.entries
            containers.start(
                self.engine, request.image, instance_command(request.constants, index, cluster),
                {**request.constants, "INSTANCE_ID": str(index)}, purpose="run",
                labels={
                    TASK_LABEL: task_id, NAME_LABEL: request.name, INSTANCE_LABEL: str(index),
                    LAUNCH_LABEL: request.launch_id, OWNER_LABEL: self.owner,
                    INSTANCES_LABEL: str(request.instances),
                    PROFILE_LABEL: request.profile, FORWARDED_LABEL: "yes" if forwarded else "no",
                },
            )  # fmt: skip

        with ThreadPoolExecutor(min(request.instances, AT_ONCE), thread_name_prefix="qimg-start") as pool:
            started = [pool.submit(start, index) for index in range(request.instances)]
        failed = [(index, error) for index, outcome in enumerate(started) if (error := outcome.exception())]
        if not failed:
            return task_id
        index, failure = failed[0]  # the first, by instance: the others were all tried too
        if isinstance(failure, containers.ContainerExited):
            self.stop(task_id)
            raise LaunchFailed(
                f"instance {index} exited with code {failure.code} as it started",
                tuple(f"output: {line}" for line in failure.tail),
            ) from None
        if isinstance(failure, containers.ContainerGone):
            self.stop(task_id)
            raise LaunchFailed(f"instance {index} is gone: its container was removed as it started") from None
        if isinstance(failure, EngineError):
            self.stop(task_id)
            raise BackendError(f"the local engine could not start {request.image}: {failure}") from None
        raise failure

    def _containers(self, *labels: str) -> list[Container]:
        """The caller's own task containers that carry every one of `labels` (all of them: none given)."""
        mine = f"{OWNER_LABEL}={self.owner}"
        # Inspected one by one: the listing has neither exit codes nor the published ports' addresses.
        found = []
        for container_id in self.engine.containers([*(labels or (f"{containers.PURPOSE_LABEL}=run",)), mine]):
            with contextlib.suppress(NotFound):  # removed in between
                found.append(self.engine.inspect(container_id))
        # Anyone who reaches the engine can label a container: one whose instance number is not one
        # qimg writes is not a task qimg made.
        return [
            container
            for container in found
            if _INSTANCE.fullmatch(labels_of(container).get(INSTANCE_LABEL, ""))
        ]

    def _task_containers(self, task_id: str, instance: int | None = None) -> list[Container]:
        """The task's containers, or the one of `instance`: each login's read of its host keys inspects
        its own container, not all of them (8 instances: 24 engine requests, not 80)."""
        if instance is None:
            return self._containers(f"{TASK_LABEL}={task_id}")
        return self._containers(f"{TASK_LABEL}={task_id}", f"{INSTANCE_LABEL}={instance}")

    def launched(self, launch_id: str) -> list[TaskView]:
        return _task_views(self._containers(f"{LAUNCH_LABEL}={launch_id}"))

    def poll_not_before(self) -> float:
        return 0.0  # the local engine is not a shared service

    def view(self, task_id: str) -> TaskView:
        found = self._task_containers(task_id)
        if not found:
            raise TaskNotFound(f"no local task {task_id}")
        return _task_view(task_id, found)

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        parts: list[str] = []
        for container in sorted(self._task_containers(task_id, instance), key=_instance_index):
            index = _instance_index(container)
            if instance is not None and index != instance:
                continue
            logs = self.engine.logs(container["Id"], stdout=not stderr, stderr=stderr)
            prefix = "" if instance is not None else f"{index}> "
            parts.extend(prefix + line + "\n" for line in logs.splitlines())
        return "".join(parts)

    def stop(self, task_id: str) -> None:
        try:
            found = self._task_containers(task_id)
            with ThreadPoolExecutor(max(1, min(len(found), AT_ONCE)), thread_name_prefix="qimg-rm") as pool:
                removed = [pool.submit(containers.remove, self.engine, found_["Id"]) for found_ in found]
            for outcome in removed:  # each was tried, whatever the others did
                outcome.result()
        except EngineError as error:
            raise BackendError(f"the local engine could not remove task {task_id}: {error}") from None

    def tasks(self) -> list[TaskView]:
        return _task_views(self._containers())


def _task_views(found: list[Container]) -> list[TaskView]:
    groups: dict[str, list[Container]] = defaultdict(list)
    for container in found:
        groups[labels_of(container).get(TASK_LABEL, "")].append(container)
    return [_task_view(task_id, group) for task_id, group in groups.items() if task_id]


def _instance_index(container: Container) -> int:
    return int(labels_of(container)[INSTANCE_LABEL])  # checked when listed


def _instance_count(group: list[Container]) -> int:
    """The instances the task was launched with, as its containers' label says (written at submit);
    never fewer than the containers found (a container labelled by someone else is passed over)."""
    counts = {labels_of(container).get(INSTANCES_LABEL, "") for container in group}
    (label,) = counts if len(counts) == 1 else ("",)
    found = max(_instance_index(container) for container in group) + 1
    return max(int(label), found) if _INSTANCE.fullmatch(label) else max(found, len(group))


def _task_view(task_id: str, group: list[Container]) -> TaskView:
    try:
        return _unchecked_view(task_id, group)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise BackendError(
            f"the local engine described task {task_id} in a way qimg cannot read: {error!r}"
        ) from None


def _unchecked_view(task_id: str, group: list[Container]) -> TaskView:
    group = sorted(group, key=_instance_index)
    instances, errors, states, exit_codes = [], [], [], []
    for container in group:
        status = container["State"]
        states.append(status["Status"])
        forward = None
        bindings = (container["NetworkSettings"].get("Ports") or {}).get("22/tcp") or []
        if status["Running"] and bindings and labels_of(container).get(FORWARDED_LABEL) != "no":
            forward = Endpoint(bindings[0]["HostIp"], int(bindings[0]["HostPort"]))
        instances.append(
            InstanceView(_instance_index(container), forward, int(container.get("RestartCount", 0)) + 1)
        )
        if status["Status"] in containers.OVER:
            exit_codes.append(int(status["ExitCode"]))
            errors.append(f"instance {_instance_index(container)} exited with code {status['ExitCode']}")
    count = _instance_count(group)
    present = {_instance_index(container) for container in group}
    lost = [index for index in range(count) if index not in present]
    errors.extend(f"instance {index} is gone: its container was removed" for index in lost)
    if lost:
        state = "Failure"
    elif all(state == "running" for state in states):
        state = "FullyExecuting"
    elif "running" in states:
        state = "PartiallyExecuting"
    elif all(state == "created" for state in states):
        state = "Submitted"
    else:
        state = "Failure" if any(exit_codes) else "Success"
    first = labels_of(group[0])
    created = datetime.fromisoformat(group[0]["Created"][:19] + "+00:00")
    return TaskView(
        task_id, first.get(NAME_LABEL, ""), state, count, tuple(instances),
        tuple(errors), created, profile=first.get(PROFILE_LABEL, ""),
        watches_idle=any(
            entry.startswith(f"{IDLE_STOP_CONSTANT}=") for entry in group[0]["Config"].get("Env") or []
        ),
    )  # fmt: skip
