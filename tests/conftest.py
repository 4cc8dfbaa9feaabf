"""Fixtures shared by the suites that need the Docker engine (provided by `make test`)."""

from __future__ import annotations

import docker
import pytest


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()
