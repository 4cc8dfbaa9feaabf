"""Qarnot's task documents, as the SDK parsed them, read into the backend's views and checked: the
forward's host and port go into an ssh config."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from qimg.errors import BackendError, first_line
from qimg.launcher.backends.base import IDLE_STOP_CONSTANT, InstanceView, TaskView
from qimg.launcher.ssh import Endpoint

SSH_PORT = 22
_reading_results = threading.local()  # `on` while this thread reads a task's result bucket


def skip_bucket_creation_on_read(s3client: Any) -> None:
    """The SDK's public `task.results` makes the result bucket (S3 CreateBucket) when it is missing,
    which would bring back a bucket qimg deleted. This hooks the S3 client through botocore's public
    event system: a CreateBucket sent while a result bucket is only read (`_results_read`, in this
    thread) is answered here, and nothing is sent."""
    from botocore.awsrequest import AWSResponse

    def answer(**_event: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if getattr(_reading_results, "on", False):
            return AWSResponse("", 200, {}, None), {}
        return None

    s3client.meta.events.register_first("before-call.s3.CreateBucket", answer, unique_id="qimg-results-read")


@contextlib.contextmanager
def _results_read() -> Iterator[None]:
    _reading_results.on = True
    try:
        yield
    finally:
        _reading_results.on = False


def result_bucket(task: Any) -> str:
    """The name of the task's result bucket ("" without one, or without storage)."""
    from qarnot.exceptions import BucketStorageUnavailableException

    try:
        with _results_read():
            bucket = task.results
    except BucketStorageUnavailableException:
        return ""
    name = getattr(bucket, "uuid", None)
    return name if isinstance(name, str) else ""


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
    results = result_bucket(task)
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
        result_bucket=results,
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
