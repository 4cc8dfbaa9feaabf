"""The Qarnot backend, through the real `qarnot` SDK.

The token and cluster come from where the SDK itself reads them: QARNOT_CLIENT_TOKEN and
QARNOT_CLUSTER_URL, or an INI file (`[cluster] url=`, `[client] token=`) named by QARNOT_CONFIG_FILE
or at ~/.qarnot/qarnot.conf. The SDK (and boto3 with it) is imported only when a command needs it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from qimg.errors import BackendError, QimgError, TaskNotFound, UsageError, first_line
from qimg.launcher.backends.base import TASK_TAG, InstanceView, TaskRequest, TaskView
from qimg.launcher.ssh import Endpoint

T = TypeVar("T")
SSH_PORT = 22
# A dropped connection reaches us as is (the SDK retries 429 and 5xx only): reads are retried here,
# a few times, quickly. A submit never is: the task may exist even though the reply was lost.
READ_RETRIES = 4


def config_file() -> Path | None:
    named = os.environ.get("QARNOT_CONFIG_FILE")
    if named:
        return Path(named)
    default = Path.home() / ".qarnot" / "qarnot.conf"
    return default if default.is_file() else None


def _has_token(conf: Path | None) -> bool:
    if os.environ.get("QARNOT_CLIENT_TOKEN"):
        return True
    if conf is None:
        return False
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read(conf, encoding="utf-8")
    except configparser.Error as error:
        raise UsageError(f"cannot read the Qarnot config {conf}: {error.message}") from None
    return parser.has_option("client", "token")


def check_credentials() -> None:
    """Refuse early, as a usage error, when there is no token at all (no request is sent)."""
    if not _has_token(config_file()):
        raise UsageError(
            "no Qarnot token: set QARNOT_CLIENT_TOKEN (or [client] token= in ~/.qarnot/qarnot.conf), "
            "or run on this machine's Docker engine with --local"
        )


class QarnotBackend:
    name = "qarnot"

    def __init__(self) -> None:
        check_credentials()
        import qarnot
        from qarnot.exceptions import UnauthorizedException
        from requests.exceptions import RequestException

        conf = config_file()
        try:
            self.connection = qarnot.Connection(fileconf=str(conf)) if conf else qarnot.Connection()
        except UnauthorizedException:
            raise UsageError(
                "Qarnot refused the token (401): check QARNOT_CLIENT_TOKEN or the token in your Qarnot config"
            ) from None
        except (RequestException, ValueError) as error:
            raise BackendError(f"cannot reach Qarnot at {_cluster_url()}: {first_line(error)}") from None
        self._tasks: dict[str, Any] = {}

    def _call(self, what: str, action: Callable[[], T], *, retry: bool = True) -> T:
        """One SDK call with its exceptions turned into one-line errors."""
        from qarnot.exceptions import MissingTaskException, QarnotException, UnauthorizedException
        from requests.exceptions import ConnectionError as DroppedConnection
        from requests.exceptions import RequestException

        pause = 0.2
        for attempt in range(READ_RETRIES + 1):
            try:
                return action()
            except MissingTaskException:
                raise TaskNotFound(f"{what}: no such task on Qarnot (deleted?)") from None
            except UnauthorizedException as error:
                raise BackendError(f"{what}: Qarnot refused: {error or 'unauthorized (401)'}") from None
            except DroppedConnection as error:
                if not retry or attempt == READ_RETRIES:
                    raise BackendError(f"{what}: connection to Qarnot lost: {first_line(error)}") from None
            except (QarnotException, RequestException, ValueError) as error:
                raise BackendError(f"{what}: {first_line(error)}") from None
            time.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")

    def _task(self, task_id: str) -> Any:
        if task_id not in self._tasks:
            task = self._call("reading the task", lambda: self.connection.retrieve_task(task_id))
            task.auto_update = False  # refreshed explicitly, in view()
            self._tasks[task_id] = task
        return self._tasks[task_id]

    def submit(self, request: TaskRequest) -> str:
        task = self.connection.create_task(request.name, request.profile, request.instances)
        for key, value in request.constants.items():
            task.constants[key] = value
        # Assigning tags turns the SDK's auto-refresh off; view() always refreshes explicitly.
        task.tags = [TASK_TAG]
        try:
            self._call("submitting the task", task.submit, retry=False)
        except BackendError:
            # submit() is POST /tasks then GET /tasks/{uuid}: with a uuid, the task exists and
            # must be followed (and stopped), not forgotten.
            if not task.uuid:
                raise
        self._tasks[task.uuid] = task
        return str(task.uuid)

    def view(self, task_id: str) -> TaskView:
        task = self._task(task_id)
        self._call("reading the task", lambda: task.update(True))
        return _task_view(task)

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        task = self._task(task_id)
        read = task.stderr if stderr else task.stdout
        return _text(self._call("reading the task output", lambda: read(instance)))

    def new_output(self, task_id: str, *, stderr: bool = False) -> str:
        task = self._task(task_id)
        read = task.fresh_stderr if stderr else task.fresh_stdout
        return _text(self._call("reading the task output", read))

    def stop(self, task_id: str) -> None:
        task = self._task(task_id)
        # delete() aborts a running task too; a task already gone is what we wanted.
        with contextlib.suppress(TaskNotFound):
            self._call("deleting the task", task.delete)
        self._tasks.pop(task_id, None)

    def tasks(self) -> list[TaskView]:
        found = self._call(
            "listing tasks", lambda: list(self.connection.all_tasks(summary=False, tags=[TASK_TAG]))
        )
        views = []
        for task in found:
            task.auto_update = False
            self._tasks[task.uuid] = task
            views.append(replace(_task_view(task), credits=self._credits(task)))
        return views

    def _credits(self, task: Any) -> float | None:
        """Credits spent, when Qarnot reports them (listing does not fail without them)."""
        try:
            result = self._call("reading credits", task.credits, retry=False)
        except QimgError:
            return None
        value = getattr(result, "amount_in_euros", None)
        return float(value) if isinstance(value, int | float) else None


def _task_view(task: Any) -> TaskView:
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
    )


def _text(value: Any) -> str:
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


def _cluster_url() -> str:
    return os.environ.get("QARNOT_CLUSTER_URL", "https://api.qarnot.com")
