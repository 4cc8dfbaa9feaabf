"""The Qarnot backend, through the real `qarnot` SDK.

Settings come from `qarnot_config` (the environment first, then an INI file). The SDK (and boto3
with it) is imported only when a command needs it. What the real service does that a kind one would
not, and how it is met here:
- every request has a timeout (the SDK's default is none: a hung reply would block forever);
- the SDK's retries wrap POST /tasks too (a gateway error after the task was created submits it
  again), so the connection is made without them and qimg retries itself: reads on 429, 5xx and a
  dropped connection, a few times, quickly; credits not at all (a slow credits endpoint never makes
  `ls` wait); creation as `submit` says;
- no private attribute of the SDK is read or written: the status of a response, which its exceptions
  do not carry, and the count of requests (S3 ones included) come from urllib3's own report of each
  response (`qarnot_exchanges`).

Buckets are a `QarnotStorage` (`qarnot_storage`) the backend holds and hands its bucket calls to, and
the task documents are read into views in `qarnot_views`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

from qimg.errors import (
    BackendError,
    CreatedButFailed,
    CreationUnresolved,
    Interrupted,
    QimgError,
    TaskNotFound,
    UsageError,
    first_line,
)
from qimg.launcher import signals
from qimg.launcher.backends import qarnot_worker
from qimg.launcher.backends.base import (
    TASK_TAG,
    AccountView,
    BucketView,
    BytesMoved,
    HardwareOffer,
    ObjectView,
    TaskRequest,
    TaskView,
    launch_tag,
)  # fmt: skip
from qimg.launcher.backends.qarnot_config import QarnotSettings, settings
from qimg.launcher.backends.qarnot_exchanges import Exchanges
from qimg.launcher.backends.qarnot_storage import QarnotStorage
from qimg.launcher.backends.qarnot_views import output_text, skip_bucket_creation_on_read, task_view

T = TypeVar("T")
READ_RETRIES = 4  # of a read answered 429 or 5xx, or whose connection dropped
TRANSIENT = frozenset({429, 500, 502, 503, 504})  # the statuses the SDK itself would retry
CONNECT_ATTEMPTS = 3  # of the connection's own requests (GET /settings, GET /info)
CREDITS_TIMEOUT, CREDITS_BUDGET = 5, 8.0  # seconds: one credits request, all of them in `tasks()`
# Creation. Refused (429, 503: nothing was created): sent again after waits doubling from 1 s up to
# 16 s, paced by the request budget. Unclear (no reply, a dropped connection, 500/502/504): the
# launch's tag is listed for up to LISTING_LAG seconds, since a new task may take that long to be
# listed; only when every listing in that time came back without it is the creation sent again.
# Any other answer (400, 402, 403, 404) refuses the creation for good: it fails at once.
CREATE_REFUSALS, CREATE_PAUSE, CREATE_MAX_PAUSE = 6, 1.0, 16.0
REFUSED = frozenset({429, 503})
LISTING_LAG, LISTING_PAUSE = 60.0, 2.0
UNCLEAR_RESENDS = 2
SNAPSHOT_FIRST_PAUSE, SNAPSHOT_MAX_PAUSE = 0.2, 2.0  # seconds between looks at an instant snapshot
# Requests per second, on average since the backend was opened, that looking at a task may bring the
# total to: the service is shared and answers 429 when pressed. A launch spends its first requests
# at once (settings, checks, creation), so its first looks wait until the average allows them. Below
# 2, leaving room for the output read that follows a forward.
REQUEST_BUDGET = 1.8


class QarnotBackend:
    name: str  # what the registry calls it, set when it opens the backend

    def __init__(self, config: QarnotSettings | None = None) -> None:
        import qarnot
        from qarnot.exceptions import QarnotException, UnauthorizedException
        from requests.exceptions import RequestException

        self.settings = config or settings()
        self.opened_at = time.monotonic()
        self.exchanges = Exchanges(self.settings.cluster_url, self.settings.storage_url)
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            self.exchanges.forget_last()
            try:
                # retry_count=0: qimg retries, knowing which requests may be sent again.
                self.connection = qarnot.Connection(
                    client_token=self.settings.token, cluster_url=self.settings.cluster_url,
                    storage_url=self.settings.storage_url, cluster_timeout=self.settings.request_timeout,
                    retry_count=0,
                )  # fmt: skip
            except UnauthorizedException:
                raise UsageError(
                    f"Qarnot at {self.settings.shown_url} refused the token ({self.settings.source}, 401): "
                    "check it"
                ) from None
            except (QarnotException, RequestException, ValueError) as error:
                if attempt < CONNECT_ATTEMPTS and self._transient(error):
                    time.sleep(0.5 * attempt)
                    continue
                raise BackendError(
                    f"cannot reach Qarnot at {self.settings.shown_url}: {first_line(error)}"
                ) from None
            # The SDK reads GET /settings without looking at its status: an error there would leave
            # a connection with the default storage.
            answered = self.exchanges.worst_status() or 0
            if answered < 400:
                break
            if attempt == CONNECT_ATTEMPTS or answered not in TRANSIENT:
                raise BackendError(f"cannot reach Qarnot at {self.settings.shown_url}: it answers {answered}")
            time.sleep(0.5 * attempt)
        self.storage = QarnotStorage(self.connection, self.settings, self.exchanges)
        if self.connection.s3client is not None:
            skip_bucket_creation_on_read(self.connection.s3client)
        self._tasks: dict[str, Any] = {}
        self._fresh: dict[str, TaskView] = {}  # views read by the request that created the task

    # `Storage`: the buckets are the storage's; snapshot and abort, below, act on tasks.
    def buckets(self) -> list[BucketView]:
        return self.storage.buckets()

    def create_bucket(self, name: str) -> None:
        self.storage.create_bucket(name)

    def delete_bucket(self, name: str) -> None:
        self.storage.delete_bucket(name)

    def objects(self, bucket: str) -> list[ObjectView]:
        return self.storage.objects(bucket)

    def upload(self, bucket: str, key: str, source: BinaryIO | None, moved: BytesMoved) -> None:
        self.storage.upload(bucket, key, source, moved)

    def download(self, bucket: str, key: str, target: BinaryIO, moved: BytesMoved) -> None:
        self.storage.download(bucket, key, target, moved)

    @property
    def requests_sent(self) -> int:
        return self.exchanges.count

    def _transient(self, error: BaseException) -> bool:
        """A failure worth sending again: a dropped connection, or a response the service may not
        give next time (429, 5xx)."""
        from requests.exceptions import ConnectionError as DroppedConnection

        return isinstance(error, DroppedConnection) or self.exchanges.last_status() in TRANSIENT

    def poll_not_before(self) -> float:
        return self.opened_at + (self.requests_sent + 1) / REQUEST_BUDGET

    def _call(self, what: str, action: Callable[[], T], *, retry: bool = True) -> T:
        """One SDK call with its exceptions turned into one-line errors; sent again (unless `retry` is
        off) when it was answered 429 or 5xx or its connection dropped."""
        from qarnot.exceptions import MissingTaskException, QarnotException, UnauthorizedException
        from requests.exceptions import ConnectionError as DroppedConnection
        from requests.exceptions import RequestException

        pause = 0.5
        for attempt in range(READ_RETRIES + 1):
            self.exchanges.forget_last()
            try:
                return action()
            except MissingTaskException:
                raise TaskNotFound(f"{what}: no such task on Qarnot (deleted?)") from None
            except UnauthorizedException as error:
                raise BackendError(f"{what}: Qarnot refused: {error or 'unauthorized (401)'}") from None
            except (QarnotException, RequestException, ValueError) as error:
                if not retry or attempt == READ_RETRIES or not self._transient(error):
                    lost = isinstance(error, DroppedConnection)
                    raise BackendError(
                        f"{what}: {'connection to Qarnot lost: ' if lost else ''}{first_line(error)}"
                    ) from None
            time.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")

    def _task(self, task_id: str) -> Any:
        if task_id not in self._tasks:
            task = self._call("reading the task", lambda: self.connection.retrieve_task(task_id))
            task.auto_update = False  # refreshed explicitly, in view()
            self._tasks[task_id] = task
        return self._tasks[task_id]

    def _new_task(self, request: TaskRequest) -> Any:
        task = self.connection.create_task(request.name, request.profile, request.instances)
        for key, value in request.constants.items():
            task.constants[key] = value
        if request.resource_buckets or request.result_bucket:
            from qarnot.bucket import Bucket

            # create=False: qimg made them (and uploaded the inputs) before this request.
            task.resources = [
                Bucket(self.connection, name, create=False) for name in request.resource_buckets
            ]
            if request.result_bucket:
                task.results = Bucket(self.connection, request.result_bucket, create=False)
                task.upload_results_on_cancellation = True  # an aborted task still hands its results over
            if request.left_out:
                task.snapshot_blacklist = task.results_blacklist = request.left_out
        qarnot_worker.apply(task, request)
        # Assigning tags turns the SDK's auto-refresh off; view() always refreshes explicitly.
        task.tags = [TASK_TAG, launch_tag(request.launch_id)]
        return task

    def submit(self, request: TaskRequest) -> str:
        """Create the launch's one task. A creation refused (429, 503) is sent again after a wait; one
        whose outcome is unclear is looked for by the launch's tag, and sent again only when no
        listing finds it for LISTING_LAG seconds. Runs inside signals.deferred(): a signal ends a wait
        at once, as CreationUnresolved if a creation may exist unseen (its record is then kept)."""
        refusals = resends = 0
        pause = CREATE_PAUSE
        unclear: BackendError | None = None  # the last unclear outcome, while not settled
        while True:
            task = self._new_task(request)
            outcome = self._create(task)
            try:
                if outcome is None:  # answered: exactly this task was created
                    task_id = str(task.uuid)
                    self._tasks[task_id] = task  # read back by the SDK: no GET needed to act on it
                    self._fresh[task_id] = task_view(task)
                    break
                status = self.exchanges.last_status()
                if status in REFUSED and not task.uuid:
                    refusals += 1
                    if refusals > CREATE_REFUSALS:
                        busy = f"{outcome} (refused {refusals} times: Qarnot is busy, try again later)"
                        raise CreationUnresolved(busy) if unclear else BackendError(busy)
                    self._pace(pause)
                    pause = min(pause * 2, CREATE_MAX_PAUSE)
                    continue
                if task.uuid:  # created, then the GET that reads it back failed
                    task_id = str(task.uuid)
                    break
                if status is not None and status < 500:  # refused for good (400, 402, 403, 404)
                    raise CreationUnresolved(str(outcome)) if unclear else outcome
                unclear = outcome
                found = self._look_for(request, outcome)
                if found:
                    task_id = found
                    break
                resends += 1
                if resends > UNCLEAR_RESENDS:
                    raise CreationUnresolved(
                        f"{outcome}; no task of this launch was listed in {LISTING_LAG:.0f} s after each of "
                        f"{resends} creations"
                    )
            except Interrupted as interrupted:
                if unclear is None:
                    raise
                raise CreationUnresolved(
                    f"interrupted while looking for the task of an unclear creation ({unclear})",
                    interrupted.signum,
                ) from None
        if unclear is not None:  # an earlier creation may have made a task after all: one is kept
            with contextlib.suppress(QimgError):  # else followed and stopped by id, the rest by the tag
                task_id = self._reconcile(request, task_id)
        if request.snapshot_seconds:
            # Asked here rather than through the SDK's submit, which would send it once, unretried.
            # The task exists: a failure here says which, so that it is stopped like any other.
            try:
                kept = self._task(task_id)
                self._call(
                    "asking for periodic snapshots",
                    lambda: kept.snapshot(request.snapshot_seconds, blacklist=request.left_out or None),
                )
            except QimgError as error:
                raise CreatedButFailed(str(error), task_id) from None
        return task_id

    def _create(self, task: Any) -> BackendError | None:
        """POST /tasks once, without retries. None when it was answered with the task's id (then
        the SDK's GET read it back); otherwise the failure, whose status (`exchanges.last_status`)
        tells a refusal from an unclear outcome."""
        try:
            self._call("submitting the task", task.submit, retry=False)
        except BackendError as error:
            return error
        except TaskNotFound:  # the GET after the POST: the task was created (its uuid is known)
            return BackendError("submitting the task: Qarnot did not find the task it had just created")
        return None

    def _pace(self, pause: float) -> None:
        """The wait before a creation is sent again: `pause`, longer if the request budget asks."""
        signals.pause(max(pause, self.poll_not_before() - time.monotonic()))

    def _look_for(self, request: TaskRequest, outcome: BackendError) -> str:
        """The task of an unclear creation, listed by the launch's tag within LISTING_LAG seconds:
        its id, or "" when every listing in that time came back without it. Raises
        CreationUnresolved when listings failed throughout (nothing can be concluded)."""
        deadline = time.monotonic() + LISTING_LAG
        answered = False
        while True:
            try:
                found = self._reconcile(request, "")
                answered = True
            except QimgError:
                found = ""
            if found or time.monotonic() >= deadline:
                break
            self._pace(LISTING_PAUSE)
        if not found and not answered:
            raise CreationUnresolved(f"{outcome}; the launch's tasks could not be listed")
        return found

    def _reconcile(self, request: TaskRequest, submitted: str) -> str:
        """The one task of this launch to follow: `submitted` if given, else the oldest the launch's
        tag finds ("" if none). Every other task of the launch (a creation that was not answered) is
        deleted; if one cannot be, this raises, and the caller stops the whole launch by its tag."""
        found = sorted(self.launched(request.launch_id), key=lambda view: view.created or datetime.max)
        keep = submitted or (found[0].id if found else "")
        for extra in (view.id for view in found if view.id != keep):
            self.stop(extra)
        return keep

    def launched(self, launch_id: str) -> list[TaskView]:
        return self._listed([launch_tag(launch_id)], with_credits=False)

    def view(self, task_id: str) -> TaskView:
        fresh = self._fresh.pop(task_id, None)
        if fresh is not None:
            return fresh
        if task_id not in self._tasks:
            return task_view(self._task(task_id))  # read just now
        task = self._tasks[task_id]
        self._call("reading the task", lambda: task.update(True))
        return task_view(task)

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        task = self._task(task_id)
        read = task.stderr if stderr else task.stdout
        return output_text(self._call("reading the task output", lambda: read(instance)))

    def stop(self, task_id: str) -> None:
        # delete() aborts a running task too; a task already gone is what we wanted.
        with contextlib.suppress(TaskNotFound):
            task = self._task(task_id)
            self._call("deleting the task", task.delete)
        self._tasks.pop(task_id, None)

    def tasks(self) -> list[TaskView]:
        return self._listed([TASK_TAG], with_credits=True)

    def _listed(self, tags: list[str], *, with_credits: bool) -> list[TaskView]:
        found = self._call("listing tasks", lambda: list(self.connection.all_tasks(summary=False, tags=tags)))
        budget_ends = time.monotonic() + CREDITS_BUDGET
        views = []
        for task in found:
            task.auto_update = False
            self._tasks[task.uuid] = task
            view = task_view(task)
            if with_credits and time.monotonic() < budget_ends:
                view = replace(view, credits=self._credits(task))
            views.append(view)
        return views

    def abort(self, task_id: str) -> None:
        task = self._task(task_id)
        self._call("aborting the task", task.abort)

    def snapshot(self, task_id: str, timeout: float) -> None:
        task = self._task(task_id)
        # What the task leaves out of its snapshots (read back with it) is left out of this one too.
        left_out = task.snapshot_blacklist or None
        snapshot_id = self._call("asking for a snapshot", lambda: task.instant(blacklist=left_out))
        if not snapshot_id:
            raise BackendError("asking for a snapshot: Qarnot answered without a snapshot id")
        deadline, pause = time.monotonic() + timeout, SNAPSHOT_FIRST_PAUSE
        while True:
            state = self._snapshot_state(task_id, snapshot_id)
            if state == "Success":
                return
            if state == "Failure":
                raise BackendError(f"Qarnot reports that snapshot {snapshot_id} of the task failed")
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"the snapshot was not done within {timeout:.0f} s (it is {state or 'pending'})"
                )
            time.sleep(pause)
            pause = min(pause * 1.5, SNAPSHOT_MAX_PAUSE)

    def credits(self, task_id: str) -> float | None:
        """Credits the task has spent so far, in euros, when Qarnot reports them in time."""
        return self._credits(self._task(task_id))

    def _snapshot_state(self, task_id: str, snapshot_id: str) -> str:
        """The state of an instant snapshot, read from the API's reply (GET /tasks/{uuid}/snapshot/{id}):
        the SDK's Snapshot keeps it private, and its wait_snapshot polls every 10 s and cannot tell a
        failure from a success."""
        import requests
        from qarnot.exceptions import MissingTaskException

        url = f"{self.connection.cluster.rstrip('/')}/tasks/{task_id}/snapshot/{quote(snapshot_id, safe='')}"

        def read() -> str:
            reply = requests.get(
                url, headers={"Authorization": self.settings.token}, timeout=self.settings.request_timeout
            )
            if reply.status_code == 404:
                raise MissingTaskException(f"no snapshot {snapshot_id} of task {task_id}")
            reply.raise_for_status()
            document = reply.json()
            state = document.get("status") if isinstance(document, dict) else None
            return state if isinstance(state, str) else ""

        return self._call("reading the snapshot", read)

    @contextlib.contextmanager
    def _timeout(self, seconds: int) -> Iterator[None]:
        """The connection's requests bounded to `seconds` (never longer than qimg's bound)."""
        saved = self.connection.timeout
        self.connection.timeout = min(seconds, self.settings.request_timeout)
        try:
            yield
        finally:
            self.connection.timeout = saved

    def _credits(self, task: Any) -> float | None:
        """Credits spent, when Qarnot reports them in time (listing does not fail without them)."""
        try:
            with self._timeout(CREDITS_TIMEOUT):
                result = self._call("reading credits", task.credits, retry=False)
        except QimgError:
            return None
        value = getattr(result, "amount_in_euros", None)
        return float(value) if isinstance(value, int | float) else None

    def profile_names(self) -> list[str]:
        return self._call("listing profiles", lambda: qarnot_worker.profile_names(self.connection))

    def hardware_offers(self) -> list[HardwareOffer]:
        return self._call("listing hardware", lambda: qarnot_worker.hardware_offers(self.connection))

    def account(self) -> AccountView:
        """Task counts and computing quotas (GET /info); the balance is read apart, by balance()."""
        return self._call("reading the account", lambda: qarnot_worker.account_view(self.connection))

    def balance(self) -> float | None:
        """The account's credits in euros, when Qarnot reports them in time (None otherwise)."""
        try:
            with self._timeout(CREDITS_TIMEOUT):
                return self._call(
                    "reading the balance", lambda: qarnot_worker.balance(self.connection), retry=False
                )
        except QimgError:
            return None
