"""A real registry for tests and benchmarks: Debian's docker-registry on 127.0.0.1, open or with
htpasswd auth (`htpasswd` from apache2-utils), serving from a folder of the caller's."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qimg.launcher.ssh import free_local_port

REGISTRY_USER = "qimg-tester"
REGISTRY_PASSWORD = "s3cret-registry-password"
# The options that log `qimg run`/`push` into this registry (the password on stdin).
LOGIN = ("--username", REGISTRY_USER, "--password-stdin")


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    auth: bool

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"


@contextlib.contextmanager
def serve_registry(root: Path, auth: bool) -> Iterator[Registry]:
    port = free_local_port()
    config = root / "config.yml"
    lines = [
        "version: 0.1",
        "log: {level: error}",
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}",
        f"http: {{addr: 127.0.0.1:{port}}}",
    ]
    if auth:
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], capture_output=True, text=True, check=True
        ).stdout
        (root / "htpasswd").write_text(htpasswd)
        lines.append(f"auth: {{htpasswd: {{realm: qimg-tests, path: {root / 'htpasswd'}}}}}")
    config.write_text("\n".join(lines) + "\n")
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None and time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", auth)
    finally:
        server.terminate()
        server.wait(timeout=30)
