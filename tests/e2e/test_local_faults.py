"""Local launches met by what the engine and other processes do to them (issue 15, section 3: the
findings of ../shared/adversarial-3.md on the local engine), with the real engine and real ssh."""

from __future__ import annotations

import os
import time
from pathlib import Path

import docker
import pytest

from qimg.builder.labels import START_COMMAND
from qimg.launcher.backends.local import INSTANCE_LABEL, NAME_LABEL, TASK_LABEL
from tests.e2e.conftest import User

pytestmark = pytest.mark.docker


def local_tasks(client: docker.DockerClient, name: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": [TASK_LABEL, f"{NAME_LABEL}={name}"]})
    return [container.name or "" for container in found]


def test_f4_a_launch_that_loses_an_instance_fails(
    docker_client: docker.DockerClient, e2e_image: str, user: User
) -> None:
    """[F4] An instance's container removed while the launch starts the others (as `stop --all --local`
    racing it does): the run is not ready on the three that are left, it fails and leaves nothing."""
    run = user.background(
        "run", "--local", e2e_image, "--name", "lost4", "--instances", "4", "--command", "true"
    )
    first = {"label": [f"{NAME_LABEL}=lost4", f"{INSTANCE_LABEL}=0"]}
    deadline = time.monotonic() + 60
    while not (found := docker_client.containers.list(all=True, filters=first)):
        assert time.monotonic() < deadline and run.poll() is None, run.communicate()
        time.sleep(0.02)
    found[0].remove(force=True)
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 1, stderr
    assert "instance 0 is gone" in stderr and "Traceback" not in stderr
    assert local_tasks(docker_client, "lost4") == []


def test_f15_a_container_that_exits_at_once_says_so(
    docker_client: docker.DockerClient, e2e_image: str, user: User, tmp_path: Path
) -> None:
    """[F15] The image's start command exits 3 at once: the run says which instance exited with which
    code, and what it printed last, not that the engine did not publish port 22."""
    start = "#!/bin/sh\\necho starting the service\\necho no licence server found >&2\\nexit 3\\n"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {e2e_image}\nUSER root\nRUN printf '{start}' > {START_COMMAND} && chmod 755 {START_COMMAND}\n"
    )
    tag = f"qimgtest/exits-at-once:{os.getpid()}"
    docker_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    try:
        result = user.qimg("run", "--local", tag, "--name", "exits3", "--command", "true")
    finally:
        docker_client.images.remove(tag)
    assert result.returncode == 1, result.stderr
    assert "instance 0 exited with code 3" in result.stderr, result.stderr
    assert "no licence server found" in result.stderr and "starting the service" in result.stderr
    assert "published" not in result.stderr and "Traceback" not in result.stderr
    assert local_tasks(docker_client, "exits3") == []
