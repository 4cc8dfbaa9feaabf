"""[15.8] What qimg relies on in the `qarnot` SDK, shown against the fake API with the real SDK, boto3
and urllib3: a connection made with retry_count=0 sends a refused creation once; urllib3's report of
each response gives its status and counts every request, the S3 ones included; the public `timeout`
bounds a request; reading a task's result bucket through the public `results` does not make it
again. (The signatures: tests/unit/test_sdk_contract.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from qarnot.bucket import Bucket
from qarnot.exceptions import QarnotGenericException

from qimg.errors import BackendError
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import STORAGE
from qimg.launcher.backends.qarnot import QarnotBackend
from qimg.launcher.backends.qarnot_config import QarnotSettings
from qimg.launcher.backends.qarnot_storage import QarnotStorage
from tests.fakes.http import serving
from tests.fakes.qarnot import FakeQarnot, Faults
from tests.fakes.s3 import S3

pytestmark = pytest.mark.docker


def backend_of(fake: FakeQarnot) -> QarnotBackend:
    return QarnotBackend(QarnotSettings(fake.token, fake.url, None, "the test"))


def test_a_refused_creation_is_sent_once_and_its_status_seen(fake: FakeQarnot) -> None:
    backend = backend_of(fake)
    fake.faults = Faults(create_refusals=[429])
    task = backend.connection.create_task("contract", "docker-network-ssh", 1)
    backend.exchanges.forget_last()
    with pytest.raises(QarnotGenericException):
        task.submit()
    assert fake.count("POST", "/tasks") == 1  # retry_count=0: the SDK did not send it again
    assert backend.exchanges.last_status() == 429 and not task.uuid


def test_a_connection_whose_settings_were_refused_is_made_again(fake: FakeQarnot) -> None:
    """The SDK reads GET /settings without looking at its status (a 503 would leave the default
    storage, storage.qarnot.com): made without the SDK's retries, the connection is made again."""
    fake.faults = Faults(settings_errors=[503])
    backend = backend_of(fake)
    assert fake.count("GET", "/settings") == 2 and backend.connection.s3client is None
    fake.faults = Faults(settings_errors=[400])
    with pytest.raises(BackendError, match="it answers 400"):
        backend_of(fake)


def test_every_request_is_counted(fake: FakeQarnot) -> None:
    backend = backend_of(fake)
    assert backend.requests_sent == len(fake.requests) == 1  # GET /settings, by the constructor
    backend.tasks()
    backend.profile_names()
    assert backend.requests_sent == len(fake.requests)


def test_bucket_requests_are_counted_and_a_result_bucket_read_is_not_made_again(
    fake: FakeQarnot, storage: S3
) -> None:
    backend = backend_of(fake)
    backend.create_bucket("qimg-contract-out")
    sent, seen_by_api = backend.requests_sent, len(fake.requests)
    backend.buckets()
    assert len(fake.requests) == seen_by_api and backend.requests_sent > sent  # S3, counted too

    task = backend.connection.create_task("contract", "docker-network-ssh", 1)
    task.results = Bucket(backend.connection, "qimg-contract-out", create=False)
    task.tags = ["qimg"]  # listed by backend.tasks()
    task.submit()
    backend.delete_bucket("qimg-contract-out")
    try:
        (view,) = backend.tasks()
        assert view.result_bucket == "qimg-contract-out"
        assert storage.bucket_names() == [], "reading the name made the bucket again"
    finally:
        backend.stop(str(task.uuid))


def test_the_public_timeout_bounds_a_request(fake: FakeQarnot) -> None:
    backend = backend_of(fake)
    fake.faults = Faults(hang_next=1, hang_paths=(r"GET /profiles",), hang_seconds=60)
    backend.connection.timeout = 1
    with pytest.raises(requests.exceptions.Timeout):
        backend.connection.profiles_names()


@pytest.fixture
def slow_s3() -> Iterator[tuple[str, list[float]]]:
    """An S3 endpoint that answers ListBuckets after 15 s: within botocore's 60 s, beyond qimg's bound."""
    asked: list[float] = []

    class Slow(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            asked.append(time.monotonic())
            time.sleep(15)
            body = b"<ListAllMyBucketsResult><Buckets></Buckets></ListAllMyBucketsResult>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}", asked


def test_bucket_requests_are_bounded_by_qimgs_timeout(
    fake: FakeQarnot, slow_s3: tuple[str, list[float]]
) -> None:
    """[15.7] The SDK's S3 client waits 60 s for a reply (botocore's default); qimg's bound (here 2 s,
    as QARNOT_CLUSTER_TIMEOUT=2 sets it) cuts it, and botocore's retries stay bounded (3 attempts)."""
    url, asked = slow_s3
    fake.attach_storage(url)
    backend = QarnotBackend(QarnotSettings(fake.token, fake.url, None, "the test", request_timeout=2))
    with pytest.raises(BackendError, match="listing buckets"):
        backend.buckets()
    assert len(asked) == 3


def test_the_storage_stands_on_its_own_and_the_backend_hands_it_the_bucket_calls(
    fake: FakeQarnot, storage: S3
) -> None:
    """The Qarnot storage is an object made with what it needs (no attribute set by a subclass): made
    alone on the backend's connection, what it does the backend's Storage calls see, and its S3
    requests are counted with the cluster's."""
    backend = backend_of(fake)
    assert registry.require(backend, STORAGE, "the test") is backend
    alone = QarnotStorage(backend.connection, backend.settings, backend.exchanges)
    name = "qimg-alone-out-0123abcd"
    sent = backend.requests_sent
    alone.create_bucket(name)
    try:
        assert backend.requests_sent > sent  # counted for the request budget
        assert [view.name for view in backend.buckets()] == [name] == storage.bucket_names()
    finally:
        backend.delete_bucket(name)
    assert alone.buckets() == []
