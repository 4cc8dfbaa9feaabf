"""What a task is sent, seen from outside: the constants on the fake Qarnot API (a secret password,
an absolute deadline, DOCKER_USER, nothing Qarnot would substitute), the local containers' environment
and owner, and the launches refused before any task exists (one line, exit 2, no POST /tasks).

What is sent is read from the fake's true values (`fake.tasks[uuid].constants`); readers of the API
see the secret ones as [SECRET].
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from qimg.engine_api import Engine, EngineError
from qimg.errors import TaskNotFound
from qimg.launcher import containers, tasks
from qimg.launcher.backends import local
from qimg.launcher.backends.base import TaskRequest
from qimg.launcher.backends.local import INSTANCE_LABEL, NAME_LABEL, OWNER_LABEL, TASK_LABEL, LocalBackend
from qimg.launcher.containers import PURPOSE_LABEL
from qimg.launcher.keys.wire import PublicKey, mpint, string
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD, REGISTRY_USER, Registry
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker
SECRET = "QARNOT_SECRET__DOCKER_REGISTRY_PASSWORD"
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # had qimg asked the engine: exit 1


@pytest.fixture(scope="module")
def root_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A qimg image for root (its sshd lets root in), built by `qimg build`."""
    state = tmp_path_factory.mktemp("root-build-state")
    built = run_qimg("build", "--tag", "qimgtest/e2e-root:latest", env={"XDG_STATE_HOME": str(state)})
    assert built.returncode == 0, built.stderr
    return "qimgtest/e2e-root:latest"


def foreign_image(client: docker.DockerClient, base: str, tag: str, tmp_path: Path, user: str) -> str:
    """An image qimg did not build (its labels blanked), with sshd from `base`, running as `user`."""
    (tmp_path / "Dockerfile").write_text(
        f'FROM {base}\nLABEL io.qimg.user="" io.qimg.start=""\nUSER {user}\nCMD ["sleep", "1"]\n'
    )
    client.images.build(path=str(tmp_path), tag=tag, rm=True)
    return tag


def push(user: User, image: str, target: str) -> str:
    pushed = user.qimg("push", image, "--to", target)
    assert pushed.returncode == 0, pushed.stderr
    return target


def test_qarnot_gets_the_password_as_a_secret_and_a_deadline(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    before = int(time.time())
    launched = user.qimg(
        "run", pushed_image, *LOGIN, "--name", "secret1", "--max-time", "90m", "--timeout", "120",
        stdin=REGISTRY_PASSWORD + "\n",
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr  # the fake pulled with the secret constant
    (task,) = fake.tasks.values()
    constants = task.constants
    assert constants["DOCKER_REGISTRY_LOGIN"] == REGISTRY_USER
    assert [name for name, value in constants.items() if REGISTRY_PASSWORD in value] == [SECRET]
    assert "DOCKER_REGISTRY_PASSWORD" not in constants
    assert constants["QIMG_MAX_SECONDS"] == "5400"
    assert before + 5400 <= int(constants["QIMG_DEADLINE"]) <= int(time.time()) + 5400
    assert not [name for name, value in constants.items() if "${" in value]
    assert REGISTRY_PASSWORD not in launched.stdout + launched.stderr
    assert user.qimg("stop", "secret1").returncode == 0


def test_local_containers_get_no_registry_credentials_and_their_owner(
    docker_client: docker.DockerClient, e2e_image: str, user: User
) -> None:
    password = "local-password-stays-out"
    launched = user.qimg("run", "--local", e2e_image, "--name", "loccred", *LOGIN, stdin=password + "\n")
    assert launched.returncode == 0, launched.stderr
    try:
        (container,) = docker_client.containers.list(filters={"label": f"{NAME_LABEL}=loccred"})
        environment = "\n".join(container.attrs["Config"]["Env"])
        assert "REGISTRY" not in environment and "SECRET" not in environment
        assert password not in environment and REGISTRY_USER not in environment
        assert container.labels[OWNER_LABEL] == local.owner()
    finally:
        assert user.qimg("stop", "loccred", "--local").returncode == 0


def test_a_foreign_image_with_a_user_logs_in_as_root_locally(
    docker_client: docker.DockerClient, root_image: str, user: User, tmp_path: Path
) -> None:
    """DOCKER_USER=root, which the local backend honours as Qarnot does: the start script needs root."""
    image = foreign_image(docker_client, root_image, "qimgtest/contract-nobody:latest", tmp_path, "nobody")
    result = user.qimg("run", "--local", image, "--command", "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "root"


def test_a_foreign_image_on_qarnot_runs_as_root_with_nothing_to_substitute(
    docker_client: docker.DockerClient, root_image: str, open_registry: Registry, fake: FakeQarnot,
    user: User, tmp_path: Path,
) -> None:  # fmt: skip
    """The fake substitutes ${NAME} in constants and honours DOCKER_USER, as Qarnot does."""
    image = foreign_image(docker_client, root_image, "qimgtest/contract-nobody:latest", tmp_path, "nobody")
    target = push(user, image, open_registry.ref("contract/foreign:1"))
    launched = user.qimg("run", target, "--name", "foreign1", "--timeout", "120")
    assert launched.returncode == 0, launched.stderr
    (task,) = fake.tasks.values()
    assert task.constants["DOCKER_USER"] == "root"
    assert task.constants["DOCKER_CMD"].startswith("sh -c ")
    assert not [name for name, value in task.constants.items() if "${" in value]
    assert user.qimg("ssh", "foreign1", "--", "id", "-un").stdout.strip() == "root"
    assert user.qimg("stop", "foreign1").returncode == 0


def test_an_image_without_sshd_is_refused_before_any_task(
    open_registry: Registry, fake: FakeQarnot, user: User
) -> None:
    refused = user.qimg("run", "--local", "debian:bookworm-slim")
    assert_one_line_error(
        refused, 2, "has no OpenSSH server (/usr/sbin/sshd and /usr/bin/ssh-keygen missing)",
        "qimg build --base library/debian:bookworm-slim",
    )  # fmt: skip
    target = push(user, "debian:bookworm-slim", open_registry.ref("contract/plain:12"))
    refused = user.qimg("run", target)
    assert_one_line_error(refused, 2, "has no OpenSSH server", f"qimg build --base {target}")
    assert fake.count("POST", "/tasks") == 0


def test_a_registry_qarnot_cannot_reach_is_refused(fake: FakeQarnot, user: User) -> None:
    env = {**user.env, **NO_ENGINE, "QARNOT_CLUSTER_URL": "https://api.qarnot.com"}
    for registry in ("127.0.0.1:5000", "localhost:5000", "192.168.1.20:5000"):
        refused = run_qimg("run", f"{registry}/team/alice:1", env=env)
        assert_one_line_error(refused, 2, f"its registry {registry} is on this machine or a private network")
    assert fake.requests == []


def rsa_public_key(bits: int) -> str:
    """An RSA public key line of `bits` bits (about 2.8k characters for 16384): its structure is all
    qimg checks, so no slow key generation is needed."""
    blob = string(b"ssh-rsa") + mpint(65537) + mpint((1 << (bits - 1)) | 1)
    return PublicKey("ssh-rsa", blob, "me@host").line


@pytest.mark.parametrize(
    ("key_line", "fragment"),
    [
        (rsa_public_key(16384), "DOCKER_SSH would be 2780 characters, over Qarnot's limit of 2048"),
        (None, "DOCKER_SSH contains '${'"),  # the user's own key, with a comment Qarnot would substitute
    ],
)
def test_constants_qarnot_would_refuse_or_rewrite_are_refused(
    pushed_image: str, fake: FakeQarnot, user: User, key_line: str | None, fragment: str
) -> None:
    key = user.home / "other.pub"
    ours = " ".join(user.public_key.read_text().split()[:2])
    key.write_text((key_line or f"{ours} me@${{HOSTNAME}}") + "\n")
    key.with_suffix("").write_text("the private key beside it; never read for a refused launch\n")
    refused = user.qimg("run", pushed_image, *LOGIN, "--key", str(key), stdin=REGISTRY_PASSWORD + "\n")
    assert_one_line_error(refused, 2, fragment)
    assert fake.count("POST", "/tasks") == 0


@pytest.mark.parametrize("login", ["", "Alice", "a b"])
def test_an_invalid_user_is_refused(pushed_image: str, fake: FakeQarnot, user: User, login: str) -> None:
    refused = user.qimg("run", pushed_image, *LOGIN, "--user", login, stdin=REGISTRY_PASSWORD + "\n")
    assert_one_line_error(refused, 2, f"invalid --user {login!r}")
    assert fake.count("POST", "/tasks") == 0


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--local", "Team/alice:1"],
        ["run", "Registry.Example.com/team/x:1"],
        ["build", "--base", "Team/alice:1"],
        ["build", "--distro", "debian", "--tag", "Registry.Example.com/team/y:1"],
        ["push", "debian:bookworm-slim", "--to", "Registry.Example.com/team/x:1"],
    ],
    ids=" ".join,
)
def test_upper_case_references_are_one_line(tmp_path: Path, args: list[str]) -> None:
    """The engine reads an upper-case first component as a registry name and refuses it, docker-py
    refuses an upper-case registry in a build's tag: both used to end in a traceback."""
    (tmp_path / ".ssh").mkdir()
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-f", str(tmp_path / ".ssh" / "id_ed25519")], check=True)
    env = {**NO_ENGINE, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    assert_one_line_error(run_qimg(*args, env=env), 2, "in lower case")


@pytest.fixture
def another_owners_task(docker_client: docker.DockerClient) -> Iterator[str]:
    """A task container as someone else's qimg leaves it on a shared engine; its task id."""
    task_id = str(uuid.uuid4())
    labels = {
        PURPOSE_LABEL: "run", TASK_LABEL: task_id, NAME_LABEL: "theirs", INSTANCE_LABEL: "0",
        OWNER_LABEL: "99999(mallory)",
    }  # fmt: skip
    container = docker_client.containers.run(
        "debian:bookworm-slim", ["sleep", "300"], detach=True, labels=labels
    )
    yield task_id
    container.remove(force=True)


def test_local_tasks_are_their_owners_only(
    docker_client: docker.DockerClient, engine: Engine, another_owners_task: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """ls, stop --all and lookups by id see the caller's tasks only. In-process, with an owner of its
    own, so that `stop --all` cannot stop the tasks of tests running beside it as the same user."""
    me = f"{os.getuid()}(contract-{uuid.uuid4().hex[:8]})"
    monkeypatch.setattr(local, "owner", lambda: me)
    backend = LocalBackend(engine)
    mine = backend.submit(
        TaskRequest("mine", "debian:bookworm-slim", "local", 1, {"DOCKER_CMD": "sleep 300"}, "l1")
    )
    try:
        assert [(task.name, task.id) for task in tasks.list_tasks("local").tasks] == [("mine", mine)]
        with pytest.raises(TaskNotFound):
            backend.view(another_owners_task)
        assert tasks.stop(None, "local")[1] == [("mine", mine)]
        theirs = docker_client.containers.list(filters={"label": f"{TASK_LABEL}={another_owners_task}"})
        assert len(theirs) == 1, "another user's task is left alone"
    finally:
        backend.stop(mine)


def test_a_forged_task_container_of_ones_own_is_not_a_task(
    docker_client: docker.DockerClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who reaches the engine can label a container as the caller's task, with an instance
    number no qimg writes: ls and lookups pass over it, without a traceback."""
    me = f"{os.getuid()}(contract-{uuid.uuid4().hex[:8]})"
    monkeypatch.setattr(local, "owner", lambda: me)
    forged_id = str(uuid.uuid4())
    labels = {
        PURPOSE_LABEL: "run", TASK_LABEL: forged_id, NAME_LABEL: "forged", INSTANCE_LABEL: "../../x",
        OWNER_LABEL: me,
    }  # fmt: skip
    forged = docker_client.containers.run(
        "debian:bookworm-slim", ["sleep", "300"], detach=True, labels=labels
    )
    try:
        assert tasks.list_tasks("local").tasks == []
        with pytest.raises(TaskNotFound):
            LocalBackend(engine).view(forged_id)
    finally:
        forged.remove(force=True)


def test_a_container_that_cannot_start_is_not_left_behind(
    docker_client: docker.DockerClient, engine: Engine
) -> None:
    """Created, then refused at start (no such program): the container goes, as it would on Ctrl-C
    between the two calls (the same handler)."""
    marker = {TASK_LABEL: str(uuid.uuid4())}
    with pytest.raises(EngineError):
        containers.start(
            engine, "debian:bookworm-slim", "/no/such/program", {}, purpose="test", labels=marker
        )
    label = f"{TASK_LABEL}={marker[TASK_LABEL]}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
