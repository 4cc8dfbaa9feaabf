"""[15.8] What qimg relies on in the `qarnot` SDK, checked on the installed SDK: the version range
pyproject.toml allows, the constructor parameters qimg passes, the methods and properties it calls,
and the task document as the SDK parses it into what the backend reads. A release that changes any
of these fails here, not in a user's launch. (Behaviour against the fake API: tests/e2e/
test_sdk_contract_e2e.py.)"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import qarnot
from qarnot.bucket import Bucket
from qarnot.connection import Connection
from qarnot.task import Task

from qimg.launcher.backends.qarnot_views import task_view

ROOT = Path(__file__).resolve().parents[2]


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_the_installed_sdk_is_in_the_range_pyproject_allows() -> None:
    pins = re.findall(r'"qarnot>=([\d.]+),<([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert len(pins) == 1, "pyproject.toml bounds qarnot on both sides, once"
    ((lower, upper),) = pins
    pin = f"qarnot>={lower},<{upper}"
    assert version(lower) <= version(qarnot.__version__) < version(upper), (pin, qarnot.__version__)


def parameters(function: Any) -> set[str]:
    return set(inspect.signature(function).parameters)


def test_the_constructor_takes_what_qimg_passes() -> None:
    assert {"client_token", "cluster_url", "storage_url", "cluster_timeout", "retry_count"} <= parameters(
        Connection.__init__
    )
    assert {"connection", "name", "create"} <= parameters(Bucket.__init__)
    assert {"summary", "tags"} <= parameters(Connection.all_tasks)
    assert {"limit", "offset"} <= parameters(Connection.hardware_constraints_page)


@pytest.mark.parametrize(
    ("owner", "names"),
    [
        (Connection, ["create_task", "retrieve_task", "all_tasks", "profiles_names", "credits",
                      "hardware_constraints_page", "retrieve_bucket", "create_bucket", "user_info",
                      "s3client", "s3resource"]),
        (Task, ["submit", "update", "delete", "abort", "stdout", "stderr", "instant", "snapshot", "credits",
                "constants", "tags", "uuid", "state", "status", "name", "profile", "instancecount", "errors",
                "creation_date", "results", "resources", "upload_results_on_cancellation", "auto_update",
                "hardware_constraints", "scheduling_type", "max_time_queue_seconds", "from_json"]),
        (Bucket, ["uuid", "delete", "list_files"]),
    ],
)  # fmt: skip
def test_the_methods_and_properties_qimg_calls_exist(owner: type, names: list[str]) -> None:
    missing = [name for name in names if not hasattr(owner, name)]
    assert missing == [], f"{owner.__name__} no longer has {missing}"


def test_the_exceptions_qimg_catches_exist() -> None:
    from qarnot import exceptions

    for name in ("MissingTaskException", "UnauthorizedException", "QarnotException",
                 "BucketStorageUnavailableException", "MissingBucketException"):  # fmt: skip
        assert issubclass(getattr(exceptions, name), Exception), name


def test_a_task_document_reads_into_the_view_qimg_follows() -> None:
    """The SDK's parser of GET /tasks/{uuid}, then qimg's view: the forward of port 22, the error, the
    result bucket (none here: no storage is needed to read it)."""
    document = {
        "uuid": "0a1b2c3d-0000-4000-8000-000000000001", "name": "n", "profile": "docker-network-ssh",
        "instanceCount": 1, "state": "FullyExecuting", "creationDate": "2026-01-01T00:00:00Z",
        "constants": [{"key": "A", "value": "b"}], "errors": [{"code": "c", "message": "m", "debug": ""}],
        "resultBucket": None, "resourceBuckets": [],
        "status": {
            "executionTimeByCpuModel": [], "executionTimeGhzByCpuModel": [],
            "runningInstancesInfo": {"perRunningInstanceInfo": [{
                "instanceId": 0, "executionAttemptCount": 2,
                "activeForwards": [{"applicationPort": 22, "forwarderPort": 50123,
                                    "forwarderHost": "gw.example.com", "bindAddress": "0.0.0.0"}],
            }]},
        },
    }  # fmt: skip
    task = Task.from_json(None, document)
    task.auto_update = False  # as the backend sets it: no request from reading a property
    view = task_view(task)
    assert (view.id, view.state, view.errors, view.result_bucket) == (
        document["uuid"],
        "FullyExecuting",
        ("c: m",),
        "",
    )
    (instance,) = view.instances
    assert instance.forward is not None and (instance.forward.host, instance.forward.port) == (
        "gw.example.com", 50123
    )  # fmt: skip
    assert instance.attempt == 2


def test_urllib3_reports_each_response_as_the_exchanges_read_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """urllib3's DEBUG record of a response carries (host, port, status) where qarnot_exchanges reads
    them; the records opened to DEBUG for it reach no handler (here pytest's, on the root logger)."""
    import http.server
    import threading

    import requests

    from qimg.launcher.backends.qarnot_exchanges import Exchanges

    class Teapot(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            self.send_response(418)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Teapot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        exchanges = Exchanges(url)
        elsewhere = Exchanges("http://127.0.0.1:9")
        exchanges.forget_last()
        requests.get(url + "/x", timeout=5)
        assert (exchanges.count, exchanges.last_status(), elsewhere.count) == (1, 418, 0)
        assert [r for r in caplog.records if r.name.startswith("urllib3")] == []
    finally:
        server.shutdown()
        server.server_close()
