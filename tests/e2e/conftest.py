"""End to end with real parts: Debian's docker-registry on 127.0.0.1 (open, and with htpasswd auth),
the fake Qarnot API running tasks on the local engine, the real SDK, and the real OpenSSH client.

Every test gets its own HOME (with an ed25519 key pair) and qimg state directory, and leaves no task
running on the fake that it did not keep.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import pytest

from tests.engines import LocalEngine
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD, Registry, serve_registry
from tests.fakes.s3 import S3, serve_s3
from tests.helpers import run_qimg, start_qimg

# One tag per test session: sessions in other worktrees build the same image with their own
# scripts on the same engine, and a shared tag could hand this session theirs.
IMAGE = f"qimgtest/e2e-alice:session-{os.getpid()}"


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with serve_registry(tmp_path_factory.mktemp("registry-open"), auth=False) as registry:
        yield registry


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with serve_registry(tmp_path_factory.mktemp("registry-auth"), auth=True) as registry:
        yield registry


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The registry with token auth (its token service: tests/fakes/registry_tokens.py)."""
    with serve_registry(tmp_path_factory.mktemp("registry-token"), auth=True, token=True) as registry:
        yield registry


@pytest.fixture(scope="session")
def e2e_image(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[str]:
    """alice's image, built by `qimg build`, with busybox for the tunnel test's HTTP server."""
    state = tmp_path_factory.mktemp("build-state")
    built = run_qimg(
        "build", "--user", "alice", "--package", "busybox", "--tag", IMAGE, env={"XDG_STATE_HOME": str(state)}
    )
    assert built.returncode == 0, built.stderr
    yield IMAGE
    docker_client.images.remove(IMAGE)  # the tag only: the layers stay in the build cache


@pytest.fixture(scope="session")
def local_image(
    local_engine: LocalEngine, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """alice's image as `e2e_image`, built by `qimg build` on the engine under test (Docker's is
    `e2e_image` itself)."""
    if local_engine.name == "docker":
        yield request.getfixturevalue("e2e_image")
        return
    state = tmp_path_factory.mktemp(f"build-state-{local_engine.name}")
    built = run_qimg(
        "build", "--user", "alice", "--package", "busybox", "--tag", IMAGE,
        env={"XDG_STATE_HOME": str(state), **local_engine.env},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    yield IMAGE
    client = local_engine.client()
    client.images.remove(IMAGE)  # the tag only: the layers stay in the build cache
    client.close()


@pytest.fixture(scope="session")
def pushed_image(e2e_image: str, auth_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image in the authenticated registry, pushed by `qimg push`."""
    target = auth_registry.ref("team/alice:e2e")
    pushed = run_qimg(
        "push", e2e_image, "--to", target, *LOGIN,
        env={"XDG_STATE_HOME": str(tmp_path_factory.mktemp("push-state"))}, stdin=REGISTRY_PASSWORD + "\n",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    return target


@dataclass(frozen=True)
class User:
    """A user's machine: HOME with a key pair, qimg's state, and the Qarnot settings. Their `qimg` is
    the installed console script, run from their working directory (`workdir`, outside the repository)
    unless a test names another."""

    home: Path
    env: dict[str, str]

    @property
    def public_key(self) -> Path:
        return self.home / ".ssh" / "id_ed25519.pub"

    @property
    def workdir(self) -> Path:
        """The user's working directory: a project folder in HOME (tests list what they make beside
        HOME), empty until a test or qimg writes there."""
        where = self.home / "work"
        where.mkdir(exist_ok=True)
        return where

    def qimg(
        self, *args: str, stdin: str | None = None, timeout: float = 300, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_qimg(*args, env=self.env, stdin=stdin, timeout=timeout, cwd=cwd or self.workdir)

    def push_to(self, image: str, registry: Registry, name: str) -> str:
        """`qimg push IMAGE --to REGISTRY/NAME`, logged into the test registry: the target pushed."""
        target = registry.ref(name)
        pushed = self.qimg("push", image, "--to", target, *LOGIN, stdin=REGISTRY_PASSWORD + "\n")
        assert pushed.returncode == 0, pushed.stderr
        return target

    def launch(
        self, image: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`qimg run IMAGE ARGS` on the fake Qarnot, logged into the test registry, with two minutes to
        be ready; `env` on top of the user's."""
        return run_qimg(
            "run", image, *LOGIN, "--timeout", "120", *args, env={**self.env, **(env or {})},
            stdin=REGISTRY_PASSWORD + "\n", cwd=self.workdir,
        )  # fmt: skip

    def background(
        self, *args: str, stdin: int | IO[Any] | None = subprocess.DEVNULL, cwd: Path | None = None
    ) -> subprocess.Popen[str]:
        """`qimg ARGS` left running (a tunnel, a launch to interrupt), its stdout and stderr piped."""
        return start_qimg(*args, env=self.env, stdin=stdin, cwd=cwd or self.workdir)


@pytest.fixture
def fake(docker_client: docker.DockerClient) -> Iterator[FakeQarnot]:
    """The fake Qarnot API; after the test, no task of it may be left that is not over, and no container."""
    with FakeQarnot(docker_client) as server:
        yield server
        live = [task.name for task in server.live()]  # tests stop what they keep
        leftover = [container.id for container in server.containers()]
    assert live == [] and leftover == [], f"left behind: tasks {live}, containers {leftover}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    with serve_s3() as server:
        yield server


@pytest.fixture
def storage(fake: FakeQarnot, s3_server: S3) -> Iterator[S3]:
    """The fake API with bucket storage (a real S3 emulator); after the test, no bucket may be left."""
    fake.attach_storage(s3_server.url)
    yield s3_server
    left = s3_server.bucket_names()
    s3_server.reset()
    assert left == [], f"buckets left behind: {left}"


@pytest.fixture
def user(tmp_path: Path, fake: FakeQarnot) -> User:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "tester",
            "-f",
            str(home / ".ssh" / "id_ed25519"),
        ],
        check=True,
    )
    env = {
        "HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "DOCKER_CONFIG": str(home / ".docker"),
        "QARNOT_CLUSTER_URL": fake.url + "/",  # a trailing slash, as users write it: the fake collapses //
        "QARNOT_CLIENT_TOKEN": fake.token,
    }
    os.environ.pop("SSH_AUTH_SOCK", None)
    return User(home, env)


@pytest.fixture
def local_user(user: User, local_engine: LocalEngine) -> User:
    """`user` with qimg pointed at the engine under test, as a user of that engine points it."""
    return User(user.home, {**user.env, **local_engine.env})


@pytest.fixture
def short_user(user: User) -> Iterator[User]:
    """`user` with a state directory as short as a real one (~/.local/state): pytest's are too deep for
    the sockets of ssh masters, where qimg turns connection reuse off."""
    state = Path(tempfile.mkdtemp(prefix="q", dir="/tmp"))
    yield User(user.home, {**user.env, "XDG_STATE_HOME": str(state)})
    shutil.rmtree(state, ignore_errors=True)
