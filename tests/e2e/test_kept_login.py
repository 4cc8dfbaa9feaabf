"""`run --command` on the readiness login's connection: one ssh handshake per instance, not two, with
the host key pinned all the same, and nothing left open afterwards. Real OpenSSH, local engine."""

from __future__ import annotations

import time

import docker
import pytest
from docker.models.containers import Container

from qimg.launcher.backends.local import NAME_LABEL
from tests.e2e.conftest import User

pytestmark = pytest.mark.docker


def sshd_log(container: Container) -> str:
    return container.logs(stdout=False, stderr=True).decode()


def test_the_command_runs_over_the_readiness_login(
    docker_client: docker.DockerClient, e2e_image: str, user: User
) -> None:
    result = user.qimg(
        "run",
        "--local",
        e2e_image,
        "--instances",
        "2",
        "--keep",
        "--name",
        "once",
        "--command",
        "echo $((6*7))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["42", "42"]
    containers = docker_client.containers.list(all=True, filters={"label": f"{NAME_LABEL}=once"})
    try:
        assert len(containers) == 2
        for container in containers:
            # sshd logs each accepted key: the readiness login carried the command too
            assert sshd_log(container).count("Accepted publickey for alice") == 1, sshd_log(container)
            # ... and qimg closed that connection when the session ended (sshd logs it a moment later)
            deadline = time.monotonic() + 30
            while "Disconnected from user alice" not in sshd_log(container):
                assert time.monotonic() < deadline, sshd_log(container)
                time.sleep(0.2)
    finally:
        assert user.qimg("stop", "once", "--local").returncode == 0
    assert docker_client.containers.list(all=True, filters={"label": f"{NAME_LABEL}=once"}) == []
