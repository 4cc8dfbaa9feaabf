"""Which engine: qimg follows the docker CLI's order (DOCKER_HOST, DOCKER_CONTEXT, the current
context), with contexts made by the real docker CLI in the test's own home, and uses one engine for
the base image's look-up, the build and the check (a context pointing at Podman, which holds images
the Docker engine has not)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from qimg.docker_context import resolve
from qimg.errors import UsageError
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker
DOCKER_CLI = shutil.which("docker") or "docker"


def docker_cli(*args: str) -> str:
    """The reference: what the docker CLI itself says, with the test's home."""
    done = subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, check=True, env=os.environ)
    return done.stdout.strip()


def create_context(name: str, host: str) -> None:
    docker_cli("context", "create", name, "--docker", f"host={host}")


def test_the_order_is_the_clis(monkeypatch: pytest.MonkeyPatch) -> None:
    create_context("first", "unix:///run/first.sock")
    create_context("second", "tcp://127.0.0.1:2999")
    assert resolve().name == "the local engine"  # no context chosen: the local socket
    docker_cli("context", "use", "first")
    assert (resolve().name, resolve().host) == ("context first", "unix:///run/first.sock")
    assert resolve().host == docker_cli("context", "inspect", "--format", "{{.Endpoints.docker.Host}}")
    monkeypatch.setenv("DOCKER_CONTEXT", "second")
    assert resolve().host == "tcp://127.0.0.1:2999" == docker_cli("context", "inspect", "--format",
                                                                  "{{.Endpoints.docker.Host}}")  # fmt: skip
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/third.sock")
    assert (resolve().name, resolve().host) == ("DOCKER_HOST", "unix:///run/third.sock")
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    assert resolve().name == "the local engine"


def test_docker_config_moves_the_whole_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", "elsewhere")
    monkeypatch.chdir(tmp_path)  # a relative DOCKER_CONFIG, as a user types it
    create_context("moved", "unix:///run/moved.sock")
    docker_cli("context", "use", "moved")
    assert resolve().host == "unix:///run/moved.sock"
    assert (tmp_path / "elsewhere" / "config.json").is_file()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DOCKER_CONTEXT": "nowhere"}, "DOCKER_CONTEXT=nowhere: no such Docker context"),
        ({"DOCKER_CONTEXT": "dead"}, "does not answer at unix:///nonexistent/docker.sock"),
        (
            {"DOCKER_CONTEXT": "ssh"},
            "does not answer at ssh://alice@127.0.0.1 (ssh: connect to host 127.0.0.1 port 22",
        ),
    ],
)
def test_contexts_qimg_cannot_use_are_one_line(env: dict[str, str], expected: str) -> None:
    create_context("dead", "unix:///nonexistent/docker.sock")
    create_context("ssh", "ssh://alice@127.0.0.1")
    result = run_qimg("ls", "--local", env=env)
    assert_one_line_error(result, 1 if "answer" in expected else 2, expected)
    assert "docker context" in result.stderr  # how to fix it


def test_a_dead_context_is_named() -> None:
    create_context("dead", "unix:///nonexistent/docker.sock")
    docker_cli("context", "use", "dead")
    assert_one_line_error(run_qimg("ls", "--local"), 1, "context dead", "docker context use default")


def test_a_current_context_that_was_removed() -> None:
    config = Path.home() / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"currentContext": "gone"}))
    assert_one_line_error(run_qimg("ls", "--local"), 2, "the current context gone", "no such Docker context")


@pytest.mark.parametrize("content", ["{not json", '{"currentContext": 7}', "x" * (2 << 20)])
def test_a_broken_docker_config_is_one_line(content: str) -> None:
    config = Path.home() / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(content)
    assert_one_line_error(run_qimg("ls", "--local"), 2, str(config))


def test_a_tls_context_gives_its_files(tmp_path: Path) -> None:
    """The files `docker context create` copied into the context's own folder, not the ones it was
    given (which the user may remove afterwards)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem", "-subj", "/CN=engine", "-days", "1"],
        capture_output=True, check=True,
    )  # fmt: skip
    shutil.copy(tmp_path / "cert.pem", tmp_path / "ca.pem")
    docker_cli(
        "context", "create", "secure", "--docker",
        f"host=tcp://127.0.0.1:2376,ca={tmp_path}/ca.pem,cert={tmp_path}/cert.pem,key={tmp_path}/key.pem",
    )  # fmt: skip
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).unlink()
    tls = resolve({"DOCKER_CONTEXT": "secure"}).tls
    assert tls is not None and tls.ca and tls.cert and tls.key
    assert tls.ca.read_bytes() == tls.cert.read_bytes()
    assert str(Path.home() / ".docker" / "contexts" / "tls") in str(tls.key)


def test_a_context_that_skips_verification_is_refused() -> None:
    docker_cli("context", "create", "lax", "--docker", "host=tcp://127.0.0.1:2376,skip-tls-verify=true")
    with pytest.raises(UsageError, match=r"context lax .* skips verifying the engine's certificate"):
        resolve({"DOCKER_CONTEXT": "lax"})


def test_one_engine_for_the_look_up_the_build_and_the_check(podman_rootful: str) -> None:
    """The current context is Podman: the base exists only in Podman's store (a tag the Docker engine
    has not), so a look-up on one engine and a build on another would fail."""
    base, tag = "qimgtest/podman-only-base:1", "qimgtest/built-through-a-context:1"
    podman = docker.DockerClient(base_url=podman_rootful)
    docker_engine = docker.from_env()
    podman.images.get("debian:bookworm-slim").tag(*base.split(":"))
    try:
        create_context("pod", podman_rootful)
        docker_cli("context", "use", "pod")
        built = run_qimg("build", "--user", "alice", "--base", base, "--distro", "debian", "--tag", tag)
        assert built.returncode == 0, built.stderr
        # Podman builds with Buildah: the legacy builder, through its Docker-compatible API.
        assert built.stdout.strip().endswith(f"on context pod ({podman_rootful}) with the legacy builder"), (
            built.stdout
        )
        assert podman.images.get(tag).labels["io.qimg.user"] == "alice"
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(tag)
        checked = run_qimg("check", tag, "--json")
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["engine"] == f"context pod ({podman_rootful})"
        listed = run_qimg("ls", "--local")
        assert listed.stdout.splitlines()[-1] == f"engine: context pod ({podman_rootful})"
    finally:
        for image in (tag, base):
            try:
                podman.images.remove(image)
            except docker.errors.ImageNotFound:
                continue
        podman.close()
        docker_engine.close()
