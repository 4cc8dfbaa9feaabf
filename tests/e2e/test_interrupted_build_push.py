"""`qimg build` and `qimg push` ended by a signal at a known point: one line, the shell's exit code
(130 for SIGINT, 143 for SIGTERM), and nothing of theirs left behind (no temporary build context, no
retag), with the real engine and a real (hanging) registry connection."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound

from tests.e2e.conftest import User
from tests.e2e.processes import Lines

pytestmark = pytest.mark.docker
SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.fixture(scope="module")
def slow_base(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Debian base whose apt-get says so, then sleeps a minute: the build's first RUN is slow."""
    folder = tmp_path_factory.mktemp("slow-base")
    slow = '#!/bin/sh\\necho qimg-test: apt-get is slow today\\nsleep 60\\nexec /usr/bin/apt-get "$@"\\n'
    (folder / "Dockerfile").write_text(
        "FROM debian:bookworm-slim\n"
        f"RUN printf '{slow}' > /usr/local/bin/apt-get && chmod 755 /usr/local/bin/apt-get\n"
    )
    tag = f"qimgtest/slow-base:{os.getpid()}"
    docker_client.images.build(path=str(folder), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag)


def _ends_with_one_line(stderr: str, signum: int) -> None:
    lines = stderr.strip().splitlines()
    assert lines and lines[-1] == f"qimg: interrupted by {signal.Signals(signum).name}", stderr
    assert sum("qimg:" in line for line in lines) == 1 and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_during_build_leaves_no_context(
    docker_client: docker.DockerClient, slow_base: str, user: User, tmp_path: Path, signum: int
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    builder = User(user.home, {**user.env, "TMPDIR": str(temporary)})
    tag = f"qimgtest/never-built:{os.getpid()}-{signum}"
    build = builder.background("build", "--base", slow_base, "--tag", tag)
    assert build.stderr is not None
    seen = Lines(build.stderr)
    seen.wait_for("apt-get is slow today")  # inside the first RUN, the context written
    # The context (and, with BuildKit, the folder of buildx's image-id file) is there: then it is not.
    written = sorted(entry.name[:11] for entry in temporary.iterdir())
    assert written in (["qimg-build-"], ["qimg-build-", "qimg-buildx"]), written
    build.send_signal(signum)
    rest = seen.rest(timeout=60)
    build.wait(timeout=30)
    assert build.returncode == 128 + signum, "".join(seen.seen)
    _ends_with_one_line("".join(rest), signum)
    assert list(temporary.iterdir()) == []
    with pytest.raises(ImageNotFound):
        docker_client.images.get(tag)


@pytest.fixture
def silent_registry() -> Iterator[tuple[str, threading.Event]]:
    """127.0.0.1:PORT that accepts connections and never answers: a push to it hangs. The event is set
    once the engine has connected."""
    server = socket.create_server(("127.0.0.1", 0))
    connected, held = threading.Event(), []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return  # closed: the test is over
            held.append(connection)
            connected.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}", connected
    server.close()
    for connection in held:
        connection.close()


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_during_push_leaves_no_retag(
    docker_client: docker.DockerClient, e2e_image: str, user: User,
    silent_registry: tuple[str, threading.Event], signum: int,
) -> None:  # fmt: skip
    registry, connected = silent_registry
    target = f"{registry}/team/alice:interrupted"
    push = user.background("push", e2e_image, "--to", target)
    assert connected.wait(60), push.communicate()  # the engine is pushing, to a registry that hangs
    time.sleep(0.5)
    assert docker_client.images.get(target)  # the retag qimg made to push
    push.send_signal(signum)
    _, stderr = push.communicate(timeout=60)
    assert push.returncode == 128 + signum, stderr
    _ends_with_one_line(stderr, signum)
    with pytest.raises(ImageNotFound):
        docker_client.images.get(target)
    assert docker_client.images.get(e2e_image)  # the image itself stays
