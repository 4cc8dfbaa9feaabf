"""A real S3 emulator for the fake Qarnot API's storage: moto's server, on 127.0.0.1 only.

moto keeps its state per process: `reset()` empties it between tests, after they were checked for
buckets left behind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer


class S3:
    def __init__(self, server: ThreadedMotoServer) -> None:
        self.server = server
        host, port = server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        # Any credentials do: moto does not check them (Qarnot's are the account's email and token).
        self.client: Any = boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id="fake", aws_secret_access_key="fake",
        )  # fmt: skip

    def bucket_names(self) -> list[str]:
        return sorted(str(bucket["Name"]) for bucket in self.client.list_buckets().get("Buckets", []))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=30).raise_for_status()


@contextlib.contextmanager
def serve_s3() -> Iterator[S3]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield S3(server)
    finally:
        server.stop()
