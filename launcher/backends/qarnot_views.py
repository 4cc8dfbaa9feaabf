"""Qarnot's task documents, as the SDK parsed them, read into the backend's views and checked: the
forward's host and port go into an ssh config."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from qimg.errors import BackendError, first_line
from qimg.launcher.backends.base import IDLE_STOP_CONSTANT, InstanceView, TaskView
from qimg.launcher.ssh import Endpoint

SSH_PORT = 22


def task_view(task: Any) -> TaskView:
    """The SDK's task, checked: the forward's host and port go into an ssh config."""
    try:
        return unchecked_view(task)
    except (TypeError, ValueError) as error:
        raise BackendError(f"Qarnot sent a task qimg cannot read: {first_line(error)}") from None


def unchecked_view(task: Any) -> TaskView:
    instances = []
    status = task.status
    info = status.running_instances_info if status is not None else None
    for index, running in enumerate(info.per_running_instance_info if info is not None else []):
        # Never index forwards blindly: a task can run for a while with none, and only port 22 is sshd.
        forward = next(
            (
                Endpoint(str(f.forwarder_host), int(f.forwarder_port))
                for f in running.active_forward
                if f.application_port == SSH_PORT and f.forwarder_host and f.forwarder_port
            ),
            None,
        )
        instance_id = running.instance_id if running.instance_id is not None else index
        instances.append(InstanceView(int(instance_id), forward, int(running.execution_attempt_count or 0)))
    # The SDK's public `results` creates the bucket when it is missing: the name it holds is read instead.
    result_bucket = getattr(task, "_result_object_id", None)
    created = task.creation_date
    if isinstance(created, datetime) and created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return TaskView(
        id=str(task.uuid),
        name=str(task.name),
        state=str(task.state),
        instance_count=int(task.instancecount or 0),
        instances=tuple(sorted(instances, key=lambda i: i.index)),
        errors=tuple(f"{e.code}: {e.message}" if e.code else str(e.message) for e in task.errors),
        created=created if isinstance(created, datetime) else None,
        result_bucket=result_bucket if isinstance(result_bucket, str) else "",
        profile=str(task.profile or ""),
        watches_idle=isinstance(task.constants, dict) and IDLE_STOP_CONSTANT in task.constants,
    )


def output_text(value: Any) -> str:
    """The API may send raw text or a JSON-quoted string (unknown which): accept both."""
    import json

    text = str(value or "")
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text
