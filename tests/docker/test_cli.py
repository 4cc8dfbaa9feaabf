"""`qimg build` and `qimg check` end to end, on the local engine."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from qimg.launcher.containers import PURPOSE_LABEL
from tests.engines import LocalEngine
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "state")}


def leftover_containers(client: docker.DockerClient) -> list[str]:
    return [c.name or "" for c in client.containers.list(all=True, filters={"label": PURPOSE_LABEL})]


@pytest.mark.parametrize(("args", "user"), [(["--user", "alice"], "alice"), ([], "root")])
def test_build_then_check(
    engine_client: docker.DockerClient,
    local_engine: LocalEngine,
    state: dict[str, str],
    args: list[str],
    user: str,
) -> None:
    """On each local engine: qimg pointed at it builds there, and checks there what it built."""
    tag = f"qimgtest/cli-{user}:latest"
    state = {**state, **local_engine.env}
    built = run_qimg("build", *args, "--tag", tag, "--json", env=state)
    assert built.returncode == 0, built.stderr
    info = json.loads(built.stdout)
    assert info["tag"] == tag and info["user"] == user and info["distro"] == "debian"
    assert engine_client.images.get(tag).id == info["id"]
    checked = run_qimg("check", "--json", env=state)  # defaults to the image just built
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["image"] == tag and report["passed"]
    names = {check["name"] for check in report["checks"]}
    assert {"password login refused", "-L tunnel", "effective sshd settings (sshd -T)"} <= names
    assert ("root login refused" in names) == (user != "root")
    assert leftover_containers(engine_client) == []


def test_check_fails_when_an_image_allows_passwords(
    engine_client: docker.DockerClient, local_engine: LocalEngine, tmp_path: Path
) -> None:
    """A drop-in read before qimg's turns passwords on: check must see it and fail, on each engine (alice's
    image there is test_build_then_check's)."""
    (tmp_path / "Dockerfile").write_text(
        "FROM qimgtest/cli-alice:latest\n"
        "RUN echo 'PasswordAuthentication yes' > /etc/ssh/sshd_config.d/0-bad.conf\n"
    )
    engine_client.images.build(path=str(tmp_path), tag="qimgtest/bad-alice:latest", rm=True)
    checked = run_qimg("check", "qimgtest/bad-alice:latest", "--json", env=local_engine.env)
    assert checked.returncode == 1
    failed = {check["name"] for check in json.loads(checked.stdout)["checks"] if not check["passed"]}
    assert failed == {"password login refused", "effective sshd settings (sshd -T)"}
    assert leftover_containers(engine_client) == []


def test_build_failure_shows_the_step(docker_client: docker.DockerClient, state: dict[str, str]) -> None:
    before = {c.id for c in docker_client.containers.list(all=True)}
    result = run_qimg(
        "build", "--user", "alice", "--package", "no-such-package-qimg", "--tag", "qimgtest/broken", env=state
    )
    assert result.returncode == 1
    assert "qimg: error: build failed at step 2/" in result.stderr
    assert "Unable to locate package no-such-package-qimg" in result.stderr
    assert "Traceback" not in result.stderr
    assert {c.id for c in docker_client.containers.list(all=True)} == before, "no container left behind"
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get("qimgtest/broken")


def test_missing_base_image(docker_client: docker.DockerClient, state: dict[str, str]) -> None:
    images_before = len(docker_client.images.list(all=True))
    result = run_qimg("build", "--user", "alice", "--base", "qimgtest/no-such-base:1", env=state)
    assert_one_line_error(result, 2, "--base qimgtest/no-such-base:1", "no such image")
    assert len(docker_client.images.list(all=True)) == images_before


def test_distro_auto_reads_os_release() -> None:
    result = run_qimg("render", "--user", "alice")
    assert result.returncode == 0, result.stderr
    assert "apt-get install" in result.stdout and 'io.qimg.distro="debian"' in result.stdout


def test_distro_auto_needs_a_local_base() -> None:
    result = run_qimg("render", "--base", "alpine:3.20")
    assert_one_line_error(result, 2, "not a local image", "--distro")


def test_check_refuses_an_image_qimg_did_not_build() -> None:
    assert_one_line_error(run_qimg("check", "debian:bookworm-slim"), 2, "not built by qimg")
