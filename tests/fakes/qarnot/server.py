"""The fake's state and its HTTP server: every request is logged, put through the faults that come
before any route (a hang, slowness, a wrong token, a faulty task read, malformed JSON), then routed by
method and path to a resource's function (ROUTES), whose reply the handler alone writes."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import docker
from docker.errors import DockerException
from docker.models.containers import Container

from tests.fakes.qarnot import account, storage, tasks
from tests.fakes.qarnot.account import Account
from tests.fakes.qarnot.faults import Faults, task_read_fault
from tests.fakes.qarnot.model import ENDING_STATES, FakeTask
from tests.fakes.qarnot.replies import DROP, Answer, Dropped, Request, Serve, json_reply

ANY = ("GET", "POST", "DELETE")  # the methods the handler serves
TASK = r"/tasks/(?P<uuid>[0-9a-f-]{36})"
SNAPSHOT = TASK + r"/snapshot"
SNAPSHOT_ID = r"(?P<snapshot>[0-9a-z-]{1,64})"
TASK_PATHS = TASK + r"(/(stdout|stderr|abort)(/\d+)?)?"  # the task's own paths (its snapshots apart)


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    path: re.Pattern[str]  # matches the whole path, as routed
    serve: Serve


def on(methods: str | tuple[str, ...], path: str, serve: Serve) -> Route:
    return Route((methods,) if isinstance(methods, str) else methods, re.compile(path, re.DOTALL), serve)


# The first route whose method and path match serves a request; none: 404. The routes on ANY answer
# the methods a path does not take (405, or 404 for snapshots), after the task's own 404.
ROUTES = (
    on("GET", "/settings", account.settings),
    on("GET", "/info", account.info),
    on("GET", "/profiles", account.profiles),
    on("GET", "/hardware-constraints", account.hardware),
    on("GET", "/credits/v1/accounts/credits", account.credits),
    on("GET", r"/credits/v1/tasks/(?P<uuid>[^/]*).*", tasks.read_credits),
    on("POST", "/tasks", tasks.create),
    on("POST", "/tasks(/summaries)?/paginate", tasks.page),
    on("GET", SNAPSHOT + "/" + SNAPSHOT_ID, storage.snapshot_status),
    on("POST", SNAPSHOT, storage.snapshot_now),
    on("POST", SNAPSHOT + "/periodic", storage.snapshot_periodic),
    on(ANY, SNAPSHOT + f"(/{SNAPSHOT_ID})?", storage.no_snapshot),
    on(("GET", "POST"), TASK + r"/(?P<stream>stdout|stderr)(/(?P<instance>\d+))?", tasks.read_output),
    on("POST", TASK + r"/abort(/\d+)?", tasks.cancel),
    on("GET", TASK, tasks.read),
    on("DELETE", TASK, tasks.remove),
    on(ANY, TASK_PATHS, tasks.not_allowed),
)
TASK_READ = re.compile(TASK_PATHS)  # a GET of one is a task read, which the task read faults may answer


def dispatch(fake: FakeQarnot, request: Request) -> Answer:
    for candidate in ROUTES:
        if request.method in candidate.methods and (match := candidate.path.fullmatch(request.path)):
            return candidate.serve(fake, replace(request, params=match.groupdict()))
    return json_reply(404, {"message": f"No route for {request.method} {request.path}"})


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
        storage.attach(self, url)

    # --- what tests look at ------------------------------------------------------------------------

    def count(self, method: str, path: str) -> int:
        return sum(1 for request in self.requests if request == (method, path))

    def body(self, method: str, path: str) -> Any:
        """The JSON body of the last such request (None if it had none)."""
        return next(body for m, p, body in reversed(self.bodies) if (m, p) == (method, path))

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
        found = self.client.containers.list(all=True, filters={"label": tasks.FAKE_LABEL})
        return [container for container in found if container.id in self.started]

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

    def is_listed_yet(self, task: FakeTask) -> bool:
        return self.faults.is_listed_yet(task)

    def visible_constants(self, task: FakeTask) -> dict[str, str]:
        return tasks.visible_constants(task)

    def output(self, task: FakeTask, index: int | None, *, stdout: bool, fresh: bool = False) -> str:
        return tasks.output(self, task, index, stdout=stdout, fresh=fresh)

    def document(self, task: FakeTask) -> dict[str, Any]:
        return tasks.document(self, task)

    # --- what tests do to the tasks ----------------------------------------------------------------

    def restart_instance(self, task_id: str, index: int) -> None:
        tasks.restart_instance(self, task_id, index)

    def end_task(self, task_id: str, state: str) -> None:
        tasks.end_task(self, task_id, state)

    def delete(self, task: FakeTask) -> None:
        tasks.delete(self, task)


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
            path = path[3:] if path.startswith("/v1/") else path
            with fake.lock:
                fake.requests.append((method, path))
                fake.request_times.append(time.monotonic())
                hang = fake.faults.take_hang(method, path)
            if hang:
                fake.closing.wait(fake.faults.hang_seconds)
                self._send(DROP)
                return
            time.sleep(fake.faults.slow_seconds)
            queried = {key: values[-1] for key, values in parse_qs(query).items()}
            self._send(answer(fake, method, path, queried, raw, self.headers.get("Authorization")))

        def _send(self, reply: Answer) -> None:
            if isinstance(reply, Dropped):
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if reply.retry_after is not None:
                self.send_header("Retry-After", str(reply.retry_after))
            self.send_header("Content-Length", str(len(reply.data)))
            self.end_headers()
            self.wfile.write(reply.data)

    return Handler


def answer(
    fake: FakeQarnot, method: str, path: str, query: dict[str, str], raw: bytes, token: str | None
) -> Answer:
    """The faults that come before any route, then the route."""
    if token != fake.token:
        return json_reply(401, {"message": "Unauthorized: invalid token"})
    read = TASK_READ.fullmatch(path) if method == "GET" else None
    fault = task_read_fault(fake, read["uuid"]) if read else None
    if fault is not None:
        return fault
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return json_reply(400, {"message": "Malformed JSON body"})
    with fake.lock:
        fake.bodies.append((method, path, body))
    return dispatch(fake, Request(method, path, query, body))
