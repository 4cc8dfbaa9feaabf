"""A fake of Qarnot's REST API that the real `qarnot` SDK talks to, and that really runs tasks.

Faithful to ../shared/qarnot-api.md: the paths the SDK uses (repeated slashes collapsed, optional
/v1 prefix), camelCase JSON with the fields the SDK's parser needs, `{"message": ...}` errors, 401 for
a wrong token, 404 after delete, stdout and fresh stdout (lines prefixed "N> " for the whole task),
paginated listing with the tag filter.

A submitted task is pulled from DOCKER_SRV/DOCKER_REPO:DOCKER_TAG with the given registry
credentials, then runs one container per instance with the constants as environment and DOCKER_CMD
as command; port 22 is published on 127.0.0.1 and reported as the instance's active forward.
Faults come from `FakeQarnot.faults`: status bursts, slow replies, dropped connections, a window of
FullyExecuting without forwards, a Failure with errors; `restart_instance` moves an instance to a new
port, as a preempted instance does.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker
from docker.errors import DockerException

FAKE_LABEL = "io.qimg.fake-qarnot"
PAGE_SIZE = 2  # small, so that listing exercises the SDK's pagination
REQUIRED_FIELDS = ("name", "profile", "instanceCount", "constants")


@dataclass
class Faults:
    status_burst: list[int] = field(default_factory=list)  # replies to the next task reads, one each
    slow_seconds: float = 0.0  # added to every reply
    drop_connections: int = 0  # the next task reads get the connection closed, no reply
    forward_delay: float = 0.0  # seconds of FullyExecuting without forwards
    failure: tuple[str, str] | None = None  # (code, message): the task fails instead of running


@dataclass
class Instance:
    index: int
    container_id: str = ""
    port: int = 0
    attempts: int = 0
    earlier_stdout: str = ""  # output of attempts before a restart: Qarnot keeps it
    earlier_stderr: str = ""


@dataclass
class FakeTask:
    uuid: str
    name: str
    profile: str
    instance_count: int
    constants: dict[str, str]
    tags: list[str]
    created: datetime
    state: str = "Submitted"
    errors: list[dict[str, str]] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    forwards_from: float = 0.0
    fresh_offsets: dict[str, int] = field(default_factory=dict)
    executing_since: float = 0.0


class FakeQarnot:
    def __init__(self, client: docker.DockerClient, token: str = "fake-token") -> None:
        self.client = client
        self.token = token
        self.faults = Faults()
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeQarnot:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        for task in list(self.tasks.values()):
            self._remove_containers(task)

    # --- what tests look at ------------------------------------------------------------------------

    def count(self, method: str, path: str) -> int:
        return sum(1 for request in self.requests if request == (method, path))

    def running(self) -> list[FakeTask]:
        """Tasks that still run a container (after a test, only the ones it kept)."""
        with self.lock:
            return [task for task in self.tasks.values() if any(i.container_id for i in task.instances)]

    def restart_instance(self, task_id: str, index: int) -> None:
        """Preemption: the instance's container goes, a new one comes back on another port."""
        with self.lock:
            task = self.tasks[task_id]
            instance = task.instances[index]
            instance.earlier_stdout += self._logs(instance, stdout=True)
            instance.earlier_stderr += self._logs(instance, stdout=False)
            old_port = instance.port
            self._remove_container(instance)
            self._start_instance(task, instance, avoid_port=old_port)

    # --- task life ---------------------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> FakeTask:
        constants = {str(c["key"]): str(c["value"]) for c in body["constants"]}  # values may be numbers
        task = FakeTask(
            str(uuid.uuid4()), str(body["name"]), str(body["profile"]), int(body["instanceCount"]),
            constants, [str(tag) for tag in body.get("tags") or []], datetime.now(timezone.utc),
        )  # fmt: skip
        task.instances = [Instance(index) for index in range(task.instance_count)]
        with self.lock:
            self.tasks[task.uuid] = task
        threading.Thread(target=self._run, args=(task,), daemon=True).start()
        return task

    def _run(self, task: FakeTask) -> None:
        time.sleep(0.2)
        with self.lock:
            if task.state != "Submitted":
                return
            task.state = "FullyDispatched"
        if self.faults.failure:
            code, message = self.faults.failure
            self._fail(task, code, message)
            return
        srv = task.constants.get("DOCKER_SRV", "https://registry-1.docker.io")
        repository = f"{re.sub(r'^https?://', '', srv).rstrip('/')}/{task.constants.get('DOCKER_REPO', '')}"
        login = task.constants.get("DOCKER_REGISTRY_LOGIN")
        auth = {"username": login, "password": task.constants.get("DOCKER_REGISTRY_PASSWORD", "")}
        try:
            self.client.images.pull(
                repository,
                tag=task.constants.get("DOCKER_TAG", "latest"),
                auth_config=auth if login else None,
            )
        except DockerException as error:
            self._fail(task, "PullFailed", f"cannot pull {repository}: {str(error)[:300]}")
            return
        with self.lock:
            if task.state != "FullyDispatched":
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

    def _start_instance(self, task: FakeTask, instance: Instance, avoid_port: int = 0) -> None:
        srv = re.sub(r"^https?://", "", task.constants.get("DOCKER_SRV", "")).rstrip("/")
        image = f"{srv}/{task.constants['DOCKER_REPO']}:{task.constants.get('DOCKER_TAG', 'latest')}"
        for _ in range(5):  # the engine may hand back the port just freed: a restart must move
            container = self.client.containers.run(
                image, command=task.constants.get("DOCKER_CMD") or None, detach=True,
                environment={**task.constants, "INSTANCE_ID": str(instance.index)},
                ports={"22/tcp": ("127.0.0.1", 0)}, labels={FAKE_LABEL: task.uuid},
            )  # fmt: skip
            container.reload()
            port = int(container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
            if port != avoid_port:
                break
            container.remove(force=True)
        instance.container_id, instance.port = container.id or "", port
        instance.attempts += 1

    def _fail(self, task: FakeTask, code: str, message: str) -> None:
        with self.lock:
            task.state = "Failure"
            task.errors.append({"code": code, "message": message, "debug": ""})

    def _remove_container(self, instance: Instance) -> None:
        if instance.container_id:
            with contextlib.suppress(DockerException):
                self.client.containers.get(instance.container_id).remove(force=True)
        instance.container_id, instance.port = "", 0

    def _remove_containers(self, task: FakeTask) -> None:
        for instance in task.instances:
            self._remove_container(instance)

    def _logs(self, instance: Instance, *, stdout: bool) -> str:
        if not instance.container_id:
            return ""
        try:
            raw = self.client.containers.get(instance.container_id).logs(stdout=stdout, stderr=not stdout)
        except DockerException:
            return ""
        return raw.decode("utf-8", "replace")

    def output(self, task: FakeTask, index: int | None, *, stdout: bool) -> str:
        chosen = task.instances if index is None else [task.instances[index]]
        text = ""
        for instance in chosen:
            own = (instance.earlier_stdout if stdout else instance.earlier_stderr) + self._logs(
                instance, stdout=stdout
            )
            text += (
                own
                if index is not None
                else "".join(f"{instance.index}> {line}\n" for line in own.splitlines())
            )
        return text

    # --- the task document the SDK parses ----------------------------------------------------------

    def document(self, task: FakeTask) -> dict[str, Any]:
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
            "constants": [{"key": k, "value": v} for k, v in task.constants.items()],
            "tags": task.tags, "resourceBuckets": [], "resultBucket": None, "completedInstances": [],
            "hardwareConstraints": [], "status": status,
            "runningInstanceCount": task.instance_count if executing else 0,
            "runningCoreCount": 2 * task.instance_count if executing else 0,
        }  # fmt: skip

    def credits(self, task: FakeTask) -> float:
        return round((time.monotonic() - task.executing_since) * 0.0001, 6) if task.executing_since else 0.0


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_TASK = re.compile(r"/tasks/([0-9a-f-]{36})(/(stdout|stderr|abort)(/(\d+))?)?")


def _handler(fake: FakeQarnot) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            path = re.sub(r"/+", "/", self.path.split("?", 1)[0])
            path = path[3:] if path.startswith("/v1/") else path
            with fake.lock:
                fake.requests.append((method, path))
            time.sleep(fake.faults.slow_seconds)
            if self.headers.get("Authorization") != fake.token:
                self._reply(401, {"message": "Unauthorized: invalid token"})
                return
            is_task_read = method == "GET" and _TASK.fullmatch(path) is not None
            if is_task_read and fake.faults.drop_connections > 0:
                fake.faults.drop_connections -= 1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if is_task_read and fake.faults.status_burst:
                self._reply(fake.faults.status_burst.pop(0), {"message": "slow down (injected)"})
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._reply(400, {"message": "Malformed JSON body"})
                return
            self._route(method, path, body)

        def _route(self, method: str, path: str, body: Any) -> None:
            if (method, path) == ("GET", "/settings"):
                self._reply(200, {"storage": None})
            elif (method, path) == ("GET", "/info"):
                self._reply(
                    200, {"email": "fake@example.com", "maxInstances": 64, "taskCount": len(fake.tasks)}
                )
            elif (method, path) == ("GET", "/profiles"):
                self._reply(200, ["docker-batch", "docker-network", "docker-network-ssh"])
            elif (method, path) == ("POST", "/tasks"):
                self._submit(body)
            elif method == "POST" and path in {"/tasks/paginate", "/tasks/summaries/paginate"}:
                self._page(body or {})
            elif method == "GET" and path.startswith("/credits/v1/tasks/"):
                task = fake.tasks.get(path.split("/")[4])
                self._reply(*((200, {"credits": fake.credits(task)}) if task else _missing(path)))
            elif match := _TASK.fullmatch(path):
                self._task(method, match.group(1), match.group(3), match.group(5))
            else:
                self._reply(404, {"message": f"No route for {method} {path}"})

        def _submit(self, body: Any) -> None:
            missing = [key for key in REQUIRED_FIELDS if not isinstance(body, dict) or key not in body]
            if missing:
                self._reply(400, {"message": f"Missing field(s): {', '.join(missing)}"})
                return
            if not isinstance(body["constants"], list) or int(body["instanceCount"]) < 1:
                self._reply(400, {"message": "constants must be a list and instanceCount at least 1"})
                return
            self._reply(200, {"uuid": fake.submit(body).uuid})

        def _page(self, body: dict[str, Any]) -> None:
            wanted = (body.get("filter") or {}).get("value")
            with fake.lock:
                matching = [t for t in fake.tasks.values() if wanted is None or wanted in t.tags]
            start = int(body.get("token") or 0)
            page = matching[start : start + PAGE_SIZE]
            more = start + PAGE_SIZE < len(matching)
            self._reply(200, {
                "data": [fake.document(task) for task in page], "token": str(start),
                "nextToken": str(start + PAGE_SIZE) if more else None, "isTruncated": more,
            })  # fmt: skip

        def _task(self, method: str, task_id: str, action: str | None, instance: str | None) -> None:
            task = fake.tasks.get(task_id)
            if task is None:
                self._reply(*_missing(task_id))
                return
            if action in {"stdout", "stderr"} and method in {"GET", "POST"}:
                index = int(instance) if instance is not None else None
                if index is not None and index >= task.instance_count:
                    self._reply(404, {"message": f"No such instance: {index}"})
                    return
                with fake.lock:
                    text = fake.output(task, index, stdout=action == "stdout")
                    if method == "POST":  # fresh: only what is new since the last POST
                        offset_key = f"{action}/{instance}"
                        seen = task.fresh_offsets.get(offset_key, 0)
                        task.fresh_offsets[offset_key] = len(text)
                        text = text[seen:]
                self._reply_text(text)
            elif action == "abort" and method == "POST":
                with fake.lock:
                    if task.state in {"Success", "Failure", "Cancelled"}:
                        self._reply(403, {"message": f"Task is {task.state}: it cannot be aborted"})
                        return
                    fake._remove_containers(task)
                    task.state = "Cancelled"
                self._reply_empty()
            elif action is None and method == "GET":
                with fake.lock:
                    document = fake.document(task)
                self._reply(200, document)
            elif action is None and method == "DELETE":
                with fake.lock:
                    fake._remove_containers(task)
                    task.state = "Cancelled"
                    del fake.tasks[task_id]
                self._reply_empty()
            else:
                self._reply(405, {"message": f"{method} not allowed here"})

        def _reply(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

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


def _missing(task_id: str) -> tuple[int, dict[str, str]]:
    return 404, {"message": f"No such task: {task_id}"}
