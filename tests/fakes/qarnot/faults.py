"""The knobs that make the fake harsh: refusals, lags, drops, hangs, failures.

A test sets them on `FakeQarnot.faults` (each field says what it does); the routes take them as
requests come, most of them one request at a time. The `take_*` methods change the counters: the
caller holds the fake's lock where two requests could take the same one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tests.fakes.qarnot.model import FakeTask
from tests.fakes.qarnot.replies import DROP, Answer, json_reply

if TYPE_CHECKING:
    from tests.fakes.qarnot.server import FakeQarnot


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

    def take_hang(self, method: str, path: str) -> bool:
        wanted = any(re.fullmatch(p, f"{method} {path}") for p in self.hang_paths)
        if wanted and self.hang_next > 0:
            self.hang_next -= 1
            return True
        return False

    def take_creation_refusal(self) -> tuple[int, int | None] | None:
        """(status, Retry-After) for a POST /tasks to refuse, or None."""
        now = time.monotonic()
        if now < self.refused_until:
            return 503, max(1, round(self.refused_until - now))
        if not self.create_refusals:
            return None
        status = self.create_refusals.pop(0)
        if self.create_retry_after is not None:
            self.refused_until = now + self.create_retry_after
        return status, self.create_retry_after

    def take_creation_drop(self, *, after: bool) -> bool:
        left = self.drop_after_create if after else self.drop_before_create
        if left <= 0:
            return False
        if after:
            self.drop_after_create -= 1
        else:
            self.drop_before_create -= 1
        return True

    def take_gateway_error(self) -> int:
        if self.gateway_error_after_create and self.gateway_error_times > 0:
            self.gateway_error_times -= 1
            return self.gateway_error_after_create
        return 0

    def take_hidden_read(self) -> int:
        """How many first reads of a new task answer 404 (missing_after_create)."""
        if self.missing_after_create > 0:
            self.missing_after_create -= 1
            return 1
        return 0

    def is_listed_yet(self, task: FakeTask) -> bool:
        """A new task shows in listings only `listing_lag` seconds after its creation."""
        age = (datetime.now(timezone.utc) - task.created).total_seconds()
        return age >= self.listing_lag


def task_read_fault(fake: FakeQarnot, task_id: str) -> Answer | None:
    """What a GET of a task's document or output answers instead of the route, or None."""
    faults = fake.faults
    if faults.drop_connections > 0:
        faults.drop_connections -= 1
        return DROP
    if faults.status_while_uploading and uploading(fake, task_id):
        return json_reply(faults.status_while_uploading, {"message": "busy (injected)"})
    if faults.status_burst:
        return json_reply(faults.status_burst.pop(0), {"message": "slow down (injected)"})
    return None


def uploading(fake: FakeQarnot, task_id: str) -> bool:
    task = fake.find(task_id)
    return task is not None and task.state == "UploadingResults"
