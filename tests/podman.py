"""Podman's Docker-compatible API for the suites: `podman system service` started on a socket of the
session's own, rootful (root's store, where scripts/ensure-env.sh copied the base image) or rootless (an
unprivileged user's store, see `serve_rootless_podman`), and ended with the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The unprivileged user rootless Podman runs as (made by scripts/ensure-env.sh, with its store and config).
ROOTLESS_USER = os.environ.get("QIMG_PODMAN_USER", "qimgpod")

# How long a starting service may take to answer /_ping (a rootless one first sets up its user namespace).
START_TIMEOUT = 60.0


def answers_ping(path: Path) -> bool:
    """Whether an engine answers `GET /_ping` with OK on the unix socket at `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: podman\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"OK")


@contextmanager
def serve_podman(
    socket_path: Path, log: Path, *, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[str]:
    """`podman system service` listening on `socket_path` until the block ends; its `unix://` URL.
    `prefix` runs it as another user (runuser ...), `env` is its whole environment."""
    argv = [*prefix, "podman", "system", "service", "--time=0", f"unix://{socket_path}"]
    with log.open("wb") as output:
        service = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # its own group: ended with everything it started, never with ours
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(socket_path):
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield f"unix://{socket_path}"
    finally:
        # SIGTERM to the service's own group: it stops listening; the containers it started (each under
        # its own conmon, outside the group) are the tests' to remove.
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()


@contextmanager
def serve_rootless_podman(log: Path) -> Iterator[str]:
    """`podman system service` as ROOTLESS_USER (with `runuser`, its environment made from nothing) on a
    socket in a folder of the session's own in the user's runtime directory; its `unix://` URL. Every
    session uses the same runtime directory: Podman's database records it and refuses another."""
    try:
        account = pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        raise RuntimeError(f"no user {ROOTLESS_USER} for rootless Podman: run `make env` as root") from None
    runtime = Path(f"/run/user/{account.pw_uid}")
    if not runtime.is_dir():
        raise RuntimeError(f"no runtime directory {runtime} for rootless Podman: run `make env` as root")
    folder = Path(tempfile.mkdtemp(prefix="qimg-", dir=runtime))
    os.chown(folder, account.pw_uid, account.pw_gid)
    environment = {
        "HOME": account.pw_dir, "XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }  # fmt: skip
    try:
        with serve_podman(
            folder / "podman.sock", log, prefix=("runuser", "-u", ROOTLESS_USER, "--"), env=environment
        ) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)
