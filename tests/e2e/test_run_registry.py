"""`qimg run` on "Qarnot" with no Docker engine: the image's manifest and labels read from its registry
(API v2, token auth), pushed there beforehand with the engine."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qimg import registry_api
from qimg.builder.spec import ImageRef
from qimg.launcher.ssh import free_local_port
from qimg.registry_api import USER_AGENT
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import (
    LOGIN,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    Registry,
    blob_file,
    put_image,
    serve_registry,
)
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker
TESTER = (REGISTRY_USER, REGISTRY_PASSWORD)


@pytest.fixture(scope="session")
def token_image(e2e_image: str, token_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """alice's image in the token-auth registry, pushed by `qimg push` through the engine."""
    target = token_registry.ref("team/alice:token")
    pushed = run_qimg(
        "push", e2e_image, "--to", target, *LOGIN,
        env={"XDG_STATE_HOME": str(tmp_path_factory.mktemp("push-token-state"))},
        stdin=REGISTRY_PASSWORD + "\n",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    return target


@pytest.fixture
def no_engine(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine without a Docker engine: DOCKER_HOST names a socket nobody serves."""
    return {"DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}"}


def test_run_launches_a_pushed_image_with_no_engine(
    token_image: str, token_registry: Registry, fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    unreachable = run_qimg("ls", "--local", env={**user.env, **no_engine})
    assert unreachable.returncode != 0 and "no-engine.sock" in unreachable.stderr  # no engine indeed
    assert token_registry.tokens is not None
    asked = len(token_registry.tokens.asked)
    result = user.launch(token_image, "--command", "id", env=no_engine)
    assert result.returncode == 0, result.stderr
    assert "uid=1000(alice) gid=1000(alice)" in result.stdout  # the login its labels name
    assert fake.count("POST", "/tasks") == 1 and fake.tasks == {}
    # qimg asked the token service itself, as the tester, for pull only.
    assert (REGISTRY_USER, "repository:team/alice:pull", USER_AGENT) in token_registry.tokens.asked[asked:]
    assert REGISTRY_PASSWORD not in result.stdout + result.stderr


def test_run_with_the_credentials_docker_login_stored_and_no_engine(
    token_image: str, fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    """No --username: the Docker config's login for the registry (as `docker login` writes it) reads
    the image, and the task pulls with it."""
    registry = token_image.partition("/")[0]
    login = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    (user.home / ".docker").mkdir()
    (user.home / ".docker" / "config.json").write_text(json.dumps({"auths": {registry: {"auth": login}}}))
    result = run_qimg("run", token_image, "--command", "id -un", env={**user.env, **no_engine})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice"
    assert REGISTRY_PASSWORD not in result.stdout + result.stderr


def test_a_wrong_registry_password_creates_no_task(
    token_image: str, fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    result = run_qimg("run", token_image, *LOGIN, env={**user.env, **no_engine}, stdin="not-the-password\n")
    assert_one_line_error(result, 2, "refused team/alice to qimg-tester", "--password-stdin")
    assert "not-the-password" not in result.stdout + result.stderr
    assert fake.count("POST", "/tasks") == 0


def test_no_credentials_for_a_private_registry_creates_no_task(
    token_image: str, fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    result = run_qimg("run", token_image, env={**user.env, **no_engine})
    registry = token_image.partition("/")[0]
    assert_one_line_error(
        result, 2, "needs credentials for team/alice", f"log in with `docker login {registry}`"
    )
    assert fake.count("POST", "/tasks") == 0


def test_an_image_absent_from_its_registry_creates_no_task(
    token_registry: Registry, fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    absent = token_registry.ref("team/nobody:1")
    result = user.launch(absent, env=no_engine)
    assert_one_line_error(result, 2, f"{absent} is not in its registry", "qimg push")
    assert fake.count("POST", "/tasks") == 0


@pytest.fixture
def open_registry_of_test(tmp_path: Path) -> Iterator[Registry]:
    """An open registry of this test's own: its storage is tampered with."""
    (tmp_path / "registry").mkdir()
    with serve_registry(tmp_path / "registry", auth=False) as registry:
        yield registry


def test_a_configuration_that_does_not_match_its_digest_is_refused(
    open_registry_of_test: Registry, fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    """The registry serves the configuration its storage holds: one changed there (same size) is refused,
    as the labels it would give (who logs in, how sshd starts) are not the pushed image's."""
    registry = open_registry_of_test
    _manifest, config = put_image(registry, "team/tampered", "1", {"qimg.user": "alice"})
    stored = blob_file(registry, config)
    stored.write_bytes(stored.read_bytes().replace(b"alice", b"mallo"))
    result = run_qimg("run", registry.ref("team/tampered:1"), env={**user.env, **no_engine})
    assert_one_line_error(result, 1, f"the registry {registry.host}", "does not match its digest")
    assert fake.count("POST", "/tasks") == 0


def test_an_image_for_another_platform_is_refused(
    open_registry: Registry, fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    put_image(open_registry, "team/arm", "1", {}, platform=("linux", "arm64"))
    result = run_qimg("run", open_registry.ref("team/arm:1"), env={**user.env, **no_engine})
    assert_one_line_error(result, 2, "is a linux/arm64 image", "--platform linux/amd64")
    assert fake.count("POST", "/tasks") == 0


def test_a_push_is_proven_by_the_registry_itself(
    e2e_image: str, token_registry: Registry, user: User
) -> None:
    """qimg asks the registry (a pull token of its own), not the engine's /distribution endpoint, for
    the digest the tag names after the push."""
    assert token_registry.tokens is not None
    target = token_registry.ref("team/alice:proof")
    asked = len(token_registry.tokens.asked)
    pushed = user.qimg("push", e2e_image, "--to", target, "--json", *LOGIN, stdin=REGISTRY_PASSWORD + "\n")
    assert pushed.returncode == 0, pushed.stderr
    digest = json.loads(pushed.stdout)["digest"]
    assert (REGISTRY_USER, "repository:team/alice:pull", USER_AGENT) in token_registry.tokens.asked[asked:]
    assert registry_api.tag_digest(ImageRef.parse(target, "IMAGE"), TESTER) == digest


def test_a_registry_that_does_not_answer_creates_no_task(
    fake: FakeQarnot, user: User, no_engine: dict[str, str]
) -> None:
    port = free_local_port()  # nothing listens there
    result = run_qimg("run", f"127.0.0.1:{port}/team/alice:1", env={**user.env, **no_engine})
    assert_one_line_error(
        result, 1, f"the registry 127.0.0.1:{port} does not answer", "check the image's name"
    )
    assert fake.count("POST", "/tasks") == 0
