"""`qimg push` against a real registry (Debian's docker-registry), open and with htpasswd auth."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import docker
import pytest
from docker.errors import APIError

from qimg.launcher.ssh import free_local_port
from tests.e2e.conftest import User
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD, REGISTRY_USER, Registry
from tests.helpers import assert_one_line_error
from tests.podman import serve_podman

pytestmark = pytest.mark.docker
AUTH = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}


def test_push_to_an_open_registry_prints_the_pinned_digest(
    docker_client: docker.DockerClient, e2e_image: str, open_registry: Registry, user: User
) -> None:
    target = open_registry.ref("team/alice:open")
    pushed = user.qimg("push", e2e_image, "--to", target)
    assert pushed.returncode == 0, pushed.stderr
    ref, _, digest = pushed.stdout.strip().partition("@")
    assert ref == target and digest.startswith("sha256:")
    assert docker_client.images.get_registry_data(target).id == digest  # the registry holds it


def test_push_with_password_stdin_then_as_json(
    docker_client: docker.DockerClient, e2e_image: str, auth_registry: Registry, user: User
) -> None:
    target = auth_registry.ref("team/alice:stdin")
    pushed = user.qimg(
        "push", e2e_image, "--to", target, *LOGIN, "--json",
        stdin=REGISTRY_PASSWORD + "\n",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    assert result["pinned"] == f"{target}@{result['digest']}"
    assert docker_client.images.get_registry_data(target, auth_config=AUTH).id == result["digest"]
    assert REGISTRY_PASSWORD not in pushed.stdout + pushed.stderr


def _docker_login(user: User, registry: Registry) -> None:
    """What `docker login` leaves in the user's Docker config."""
    config = user.home / ".docker" / "config.json"
    config.parent.mkdir(exist_ok=True)
    token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))


def test_a_base_only_in_an_authenticated_registry_is_looked_up_with_the_stored_login(
    docker_client: docker.DockerClient, auth_registry: Registry, user: User
) -> None:
    base = auth_registry.ref("team/base:private")
    docker_client.images.get("debian:bookworm-slim").tag(base)
    try:
        docker_client.images.push(base, auth_config=AUTH)
    finally:
        docker_client.images.remove(base)
    tag = "qimgtest/private-base:1"
    anonymous = user.qimg("build", "--user", "alice", "--base", base, "--distro", "debian", "--tag", tag)
    assert_one_line_error(anonymous, 2, f"--base {base}", "no such image")
    _docker_login(user, auth_registry)
    try:
        built = user.qimg("build", "--user", "alice", "--base", base, "--distro", "debian", "--tag", tag)
        assert built.returncode == 0, built.stderr
        assert REGISTRY_PASSWORD not in built.stdout + built.stderr
    finally:
        for image in (tag, base):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(image)


def test_push_with_credentials_from_the_docker_config(
    docker_client: docker.DockerClient, e2e_image: str, auth_registry: Registry, user: User
) -> None:
    _docker_login(user, auth_registry)
    target = auth_registry.ref("team/alice:config")
    pushed = user.qimg("push", e2e_image, "--to", target)
    assert pushed.returncode == 0, pushed.stderr
    assert (
        docker_client.images.get_registry_data(target, auth_config=AUTH).id
        == pushed.stdout.split("@")[1].strip()
    )


def test_wrong_password_is_refused_and_nothing_is_claimed(
    docker_client: docker.DockerClient, e2e_image: str, auth_registry: Registry, user: User
) -> None:
    target = auth_registry.ref("team/alice:wrong")
    pushed = user.qimg("push", e2e_image, "--to", target, *LOGIN, stdin="nope\n")
    assert_one_line_error(pushed, 1, target, "refused")
    assert pushed.stdout == ""
    with pytest.raises(APIError):
        docker_client.images.get_registry_data(target, auth_config=AUTH)


def test_no_credentials_for_an_auth_registry(e2e_image: str, auth_registry: Registry, user: User) -> None:
    pushed = user.qimg("push", e2e_image, "--to", auth_registry.ref("team/alice:anonymous"))
    assert_one_line_error(pushed, 1, "refused")
    assert pushed.stdout == ""


def test_registry_down(e2e_image: str, user: User) -> None:
    pushed = user.qimg("push", e2e_image, "--to", f"127.0.0.1:{free_local_port()}/team/alice:down")
    assert_one_line_error(pushed, 1, "does not answer")
    assert pushed.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--to", "team/alice:latest"], "names no registry"),
        (["--to", "127.0.0.1:5000/Team/Alice"], "invalid --to"),
        (["--to", "127.0.0.1:5000/team/alice:x", "--username", "someone"], "--password-stdin"),
    ],
)
def test_bad_push_input_is_one_line_and_exit_2(
    e2e_image: str, user: User, args: list[str], fragment: str
) -> None:
    assert_one_line_error(user.qimg("push", e2e_image, *args), 2, fragment)


def test_push_of_a_missing_image_prints_its_error_alone(user: User, open_registry: Registry) -> None:
    """(F14) A blank line on stdout came before the error."""
    result = user.qimg("push", "qimgtest/no-such-image:none", "--to", open_registry.ref("team/none:1"))
    assert_one_line_error(result, 2, "no local image qimgtest/no-such-image:none")
    assert result.stdout == ""


def test_push_through_podman_proves_the_digest_it_reports_in_status_text(
    docker_client: docker.DockerClient, auth_registry: Registry, user: User, tmp_path: Path
) -> None:
    """Rootful Podman's compat API (a service of the test's own, told the plain-HTTP registry is insecure,
    as Podman users must) reports the digest only in its `TAG: digest: D size: N` status line."""
    insecure = tmp_path / "registries.conf"
    insecure.write_text(f'[[registry]]\nlocation = "{auth_registry.host}"\ninsecure = true\n')
    folder = Path(tempfile.mkdtemp(prefix="qimg-podman-"))  # a short path: sockets' are limited
    try:
        with serve_podman(
            folder / "podman.sock", folder / "service.log",
            env={**os.environ, "CONTAINERS_REGISTRIES_CONF": str(insecure)},
        ) as url:  # fmt: skip
            target = auth_registry.ref("team/podman:pushed")
            through_podman = User(user.home, {**user.env, "DOCKER_HOST": url})
            pushed = through_podman.qimg(
                "push", "debian:bookworm-slim", "--to", target, *LOGIN, stdin=REGISTRY_PASSWORD + "\n"
            )
            assert pushed.returncode == 0, pushed.stderr
            ref, _, digest = pushed.stdout.strip().partition("@")
            assert ref == target and digest.startswith("sha256:")
            # Asked through Docker's engine: Podman has no /distribution endpoint.
            assert docker_client.images.get_registry_data(target, auth_config=AUTH).id == digest
    finally:
        shutil.rmtree(folder, ignore_errors=True)
