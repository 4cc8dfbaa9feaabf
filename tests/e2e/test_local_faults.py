"""Local launches met by what the engine and other processes do to them (issue 15, section 3: the
findings of ../shared/adversarial-3.md on the local engine), with the real engine and real ssh."""

from __future__ import annotations

import time

import docker
import pytest

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
