"""The Qarnot backend, through the real `qarnot` SDK.

Settings come from `qarnot_config` (the environment first, then an INI file). The SDK (and boto3
with it) is imported only when a command needs it. What the real service does that a kind one would
not, and how it is met here:
- every request has a timeout (the SDK's default is none: a hung reply would block forever), and the
  SDK's retries of 429 and 5xx are made short;
- the SDK retries POST /tasks too, so a gateway error after the task was created submits it again:
  creation is sent without retries, and afterwards the launch's tag finds every task it made, one is
  kept and any other deleted (also when the reply, or the GET that follows it, was lost);
- a dropped connection reaches us as is: reads are retried here, a few times, quickly;
- credits are read without retries and within a time budget, so a slow credits endpoint never makes
  `ls` wait for long.

Buckets are in `qarnot_buckets`, and the task documents read into views in `qarnot_views`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from qimg.errors import BackendError, CreatedButFailed, QimgError, TaskNotFound, UsageError, first_line
from qimg.launcher.backends import qarnot_worker
from qimg.launcher.backends.base import (
    TASK_TAG,
    AccountView,
    HardwareOffer,
    TaskRequest,
    TaskView,
    launch_tag,
)  # fmt: skip
from qimg.launcher.backends.qarnot_buckets import QarnotBuckets
from qimg.launcher.backends.qarnot_config import QarnotSettings, settings
from qimg.launcher.backends.qarnot_views import output_text, task_view

T = TypeVar("T")
READ_RETRIES = 4  # of a dropped connection, which the SDK does not retry
REQUEST_TIMEOUT = 30.0  # seconds, for every request
SDK_RETRIES, SDK_RETRY_WAIT = 3, 0.5  # 429 and 5xx: waits of 0.5, 1 and 2 s (the SDK's default: 31 s)
CREDITS_TIMEOUT, CREDITS_BUDGET = 5.0, 8.0  # seconds: one credits request, all of them in `tasks()`
SNAPSHOT_FIRST_PAUSE, SNAPSHOT_MAX_PAUSE = 0.2, 2.0  # seconds between looks at an instant snapshot
# Requests per second, on average since the backend was opened, that looking at a task may bring the
# total to: the service is shared and answers 429 when pressed. A launch spends its first requests
# at once (settings, checks, creation), so its first looks wait until the average allows them. Below
# 2, leaving room for the output read that follows a forward.
REQUEST_BUDGET = 1.8


class QarnotBackend(QarnotBuckets):
    name = "qarnot"

    def __init__(self, config: QarnotSettings | None = None) -> None:
        import qarnot
        from qarnot.exceptions import UnauthorizedException
        from requests.exceptions import RequestException

        self.settings = config or settings()
        self.opened_at = time.monotonic()
        try:
            self.connection = qarnot.Connection(
                client_token=self.settings.token, cluster_url=self.settings.cluster_url,
                storage_url=self.settings.storage_url, cluster_timeout=REQUEST_TIMEOUT,
                retry_count=SDK_RETRIES, retry_wait=SDK_RETRY_WAIT,
            )  # fmt: skip
        except UnauthorizedException:
            raise UsageError(
                f"Qarnot at {self.settings.shown_url} refused the token ({self.settings.source}, 401): "
                "check it"
            ) from None
        except (RequestException, ValueError) as error:
            raise BackendError(
                f"cannot reach Qarnot at {self.settings.shown_url}: {first_line(error)}"
            ) from None
        self._tasks: dict[str, Any] = {}
        self._fresh: set[str] = set()  # tasks whose object was refreshed by the request that made it
        self.requests_sent = 1  # GET /settings, sent by the constructor; the hook counts the rest
        self.connection._http.hooks["response"].append(self._count_response)

    def _count_response(self, response: object, *args: object, **kwargs: object) -> None:
        self.requests_sent += 1

    def poll_not_before(self) -> float:
        return self.opened_at + (self.requests_sent + 1) / REQUEST_BUDGET

    @contextlib.contextmanager
    def _once(self, timeout: float = REQUEST_TIMEOUT) -> Iterator[None]:
        """SDK requests without its retries (and with `timeout`): for creation, which must be
        reconciled instead, and for credits, which are not worth waiting for."""
        saved = self.connection._retry_count, self.connection.timeout
        self.connection._retry_count, self.connection.timeout = 0, timeout
        try:
            yield
        finally:
            self.connection._retry_count, self.connection.timeout = saved

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
        failure: QimgError | None = None
        try:
            with self._once():
                self._call("submitting the task", task.submit, retry=False)
        except (
            QimgError
        ) as error:  # the task may exist all the same: the reply, or the GET after it, was lost
            failure = error
        task_id = self._reconcile(request, str(task.uuid or ""), failure)
        if failure is None and task_id == str(task.uuid):  # the SDK read it back right after creating it
            self._tasks[task_id] = task
            self._fresh.add(task_id)
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

    def _reconcile(self, request: TaskRequest, submitted: str, failure: QimgError | None) -> str:
        """The one task of this launch to follow: the submitted one if its id came back, else the
        oldest the launch's tag finds. Every other task of the launch (a resubmission) is deleted; if
        one cannot be, this raises, and the caller stops the whole launch by its tag."""
        if failure is None and submitted:
            return submitted  # one POST, sent without retries and answered: exactly one task exists
        try:
            found = sorted(self.launched(request.launch_id), key=lambda view: view.created or datetime.max)
        except QimgError:
            if submitted:
                return submitted  # followed, and stopped by id; the launch's tag finds the rest later
            raise
        keep = submitted or (found[0].id if found else "")
        for extra in (view.id for view in found if view.id != keep):
            self.stop(extra)
        if not keep:
            raise failure or BackendError("submitting the task: Qarnot created no task")
        return keep

    def launched(self, launch_id: str) -> list[TaskView]:
        return self._listed([launch_tag(launch_id)], with_credits=False)

    def view(self, task_id: str) -> TaskView:
        if task_id in self._fresh:
            self._fresh.discard(task_id)
            return task_view(self._tasks[task_id])
        task = self._task(task_id)
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
            status = self._call("reading the snapshot", lambda: task.snapshot_status(snapshot_id))
            # The SDK's Snapshot has no public accessor for its status (wait_snapshot polls every 10 s).
            state = str(getattr(getattr(status, "_status", None), "status", ""))
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

    def _credits(self, task: Any) -> float | None:
        """Credits spent, when Qarnot reports them in time (listing does not fail without them)."""
        try:
            with self._once(CREDITS_TIMEOUT):
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
            with self._once(CREDITS_TIMEOUT):
                return self._call(
                    "reading the balance", lambda: qarnot_worker.balance(self.connection), retry=False
                )
        except QimgError:
            return None
