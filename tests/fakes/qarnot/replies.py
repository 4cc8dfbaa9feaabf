"""What a route is given (the request, as routed) and what it answers (a reply, or a dropped connection).

The handler (server.py) is the only one that writes to the socket; routes return what to write.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.fakes.qarnot.model import FakeTask

if TYPE_CHECKING:
    from tests.fakes.qarnot.server import FakeQarnot


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # as routed: repeated slashes collapsed, no /v1 prefix
    query: dict[str, str]  # the last value of each query parameter
    body: Any  # the JSON body (None if it had none)
    params: dict[str, str | None] = field(default_factory=dict)  # the route's named groups


@dataclass(frozen=True)
class Reply:
    status: int
    data: bytes = b""
    content_type: str = "text/plain"
    retry_after: int | None = None  # a Retry-After header, sent between Content-Type and Content-Length


class Dropped:
    """No reply: the connection is closed."""


DROP = Dropped()
Answer = Reply | Dropped
Serve = Callable[["FakeQarnot", Request], Answer]  # a route's function
EMPTY = Reply(200)


def json_reply(status: int, payload: Any, retry_after: int | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), "application/json", retry_after)


def text_reply(text: str) -> Reply:
    return Reply(200, text.encode(), "text/plain; charset=utf-8")


def missing(task_id: str) -> Reply:
    return json_reply(404, {"message": f"No such task: {task_id}"})


def of_task(serve: Callable[[FakeQarnot, Request, FakeTask], Answer]) -> Serve:
    """A route of one task (the `uuid` group of its path): 404 when the API serves no such task."""

    @functools.wraps(serve)
    def route(fake: FakeQarnot, request: Request) -> Answer:
        task_id = request.params["uuid"] or ""
        task = fake.find(task_id)
        return missing(task_id) if task is None else serve(fake, request, task)

    return route


def api_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
