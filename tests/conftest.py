"""Fixtures shared by every suite: the one isolation of each test from the user's files (autouse), and
the Docker engine (provided by `make test`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from qimg.engine_api import Engine
from tests.engines import ENGINES, PODMAN_FIXTURES, LocalEngine, docker_host
from tests.podman import serve_podman, serve_rootless_podman

# pip's download cache, read before any test moves HOME: content-addressed, shared by design (a test that
# installs the wheel should not download setuptools again), and nothing of qimg's is kept there.
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
)


@pytest.fixture(autouse=True)
def isolate(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test has a home and XDG folders of its own (pip's `isolate`), and no Qarnot settings: nothing
    it runs, in process or in a child, reads or writes the user's ~/.ssh, ~/.config, ~/.docker, qimg's
    state or their token. The state folder is `tmp_path` itself (qimg's state: `tmp_path / "qimg"`,
    made only when written); the home, returned, is a folder of its own beside it. A test about paths
    may set its own on top."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for variable, folder in (
        ("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share"),
    ):  # fmt: skip
        monkeypatch.setenv(variable, str(home / folder))
    monkeypatch.setenv("PIP_CACHE_DIR", PIP_CACHE)
    for variable in [name for name in os.environ if name.startswith("QARNOT_")]:
        monkeypatch.delenv(variable)
    return home


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine as the launcher speaks to it (its HTTP API, without the SDK)."""
    return Engine.from_env()


@pytest.fixture(scope="session")
def podman_rootful() -> Iterator[str]:
    """Rootful Podman's Docker-compatible API (root's store, holding the base image): its `unix://` URL,
    on a socket of this session's own (a short path: sockets' paths are limited to 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="qimg-podman-"))
    try:
        with serve_podman(folder / "podman.sock", folder / "service.log") as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_rootless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Rootless Podman's Docker-compatible API (an unprivileged user's store, holding the base image, made
    by scripts/ensure-env.sh): its `unix://` URL. The test process, root, reaches it as any user would
    reach their own socket."""
    with serve_rootless_podman(tmp_path_factory.mktemp("podman-rootless") / "service.log") as url:
        yield url


@pytest.fixture(scope="session", params=ENGINES)
def local_engine(request: pytest.FixtureRequest) -> LocalEngine:
    """Each local engine in turn: a test taking it runs on Docker, rootful Podman and rootless Podman (each
    Podman service started when a test first needs it)."""
    name: str = request.param
    if name in PODMAN_FIXTURES:
        return LocalEngine(name, request.getfixturevalue(PODMAN_FIXTURES[name]))
    return LocalEngine(name, docker_host())


@pytest.fixture
def engine_client(local_engine: LocalEngine) -> Iterator[docker.DockerClient]:
    """The SDK on the engine under test: what a test observes there (its containers, its images)."""
    client = local_engine.client()
    yield client
    client.close()
