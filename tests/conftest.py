"""Fixtures shared by the suites that need the Docker engine (provided by `make test`)."""

from __future__ import annotations

import docker
import pytest

from qimg.engine_api import Engine


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine as the launcher speaks to it (its HTTP API, without the SDK)."""
    return Engine.from_env()
