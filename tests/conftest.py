"""Fixtures shared by every suite: each test's own HOME and XDG directories, and the Docker engine
(provided by `make test`) for the suites that need it."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from qimg.engine_api import Engine

# The XDG base directories, each a folder of the test's own HOME (as pip's `isolate` fixture does). Not
# XDG_RUNTIME_DIR: nothing of qimg's reads it, and sockets need short paths (qimg keeps them in its state).
XDG = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_DATA_HOME": ".local/share",
    "XDG_STATE_HOME": ".local/state",
}


@pytest.fixture(autouse=True)
def isolate(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the machine's HOME (qimg's state, ~/.qarnot, ~/.ssh/config, keys). The HOME
    is a folder apart from `tmp_path`, which tests list. ssh still finds ~/.ssh through the passwd entry, not
    $HOME: the tests that run ssh give it a config and key of their own (tests/e2e/conftest.py `User`)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for variable, folder in XDG.items():
        (home / folder).mkdir(parents=True)
        monkeypatch.setenv(variable, str(home / folder))
    yield


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine as the launcher speaks to it (its HTTP API, without the SDK)."""
    return Engine.from_env()
