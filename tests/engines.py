"""The local engines the suites run qimg's local-engine tests on: Docker, rootful Podman and rootless
Podman, each reached the way a user points qimg at it (DOCKER_HOST)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import docker

# Test ids, in the order the suite runs them; each Podman one names the session fixture serving it.
ENGINES = ("docker", "podman", "podman-rootless")
PODMAN_FIXTURES = {"podman": "podman_rootful", "podman-rootless": "podman_rootless"}


@dataclass(frozen=True)
class LocalEngine:
    name: str
    host: str  # its DOCKER_HOST

    @property
    def env(self) -> dict[str, str]:
        """What a user's environment holds to point qimg at it."""
        return {"DOCKER_HOST": self.host}

    def client(self) -> docker.DockerClient:
        """The SDK on it: the tests' observer, independent of qimg's own engine client."""
        return docker.DockerClient(base_url=self.host)


def docker_host() -> str:
    """The Docker engine's host, as the SDK and the CLI read it."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
