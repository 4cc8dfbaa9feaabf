"""A context `qimg render --context` wrote, built by other tools as they are (the docker CLI, with its
legacy builder and with BuildKit, and `podman build`), gives the image `qimg build` gives: the same
labels, and `qimg check` passes on it, on the engine that built it. The context is named relative to the
working directory, as CI names it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from tests.engines import docker_host
from tests.helpers import run_qimg

pytestmark = pytest.mark.docker
SPEC = ("--user", "alice", "--distro", "debian")
DOCKER_CLI = shutil.which("docker") or "docker"


def render_context(where: Path) -> str:
    """The context of SPEC rendered into `where`/ctx by the installed qimg run in `where`: "ctx"."""
    where.mkdir()
    rendered = run_qimg("render", *SPEC, "--context", "ctx", cwd=where)
    assert rendered.returncode == 0, rendered.stderr
    return "ctx"


def build_with_qimg(tag: str, env: dict[str, str]) -> None:
    built = run_qimg("build", *SPEC, "--tag", tag, env=env)
    assert built.returncode == 0, built.stderr


def assert_checks_pass(tag: str, env: dict[str, str], engine: str) -> None:
    checked = run_qimg("check", tag, "--json", env=env)
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    report = json.loads(checked.stdout)
    assert report["checks"] and all(result["passed"] for result in report["checks"]), report
    assert engine in report["engine"]  # checked where it was built


def tags(engine: str) -> tuple[str, str]:
    """This test's own tags: the image built from the rendered context, and `qimg build`'s."""
    name = f"qimgtest/rendered-{os.getpid()}"
    return f"{name}:{engine}", f"{name}:{engine}-qimg-build"


def remove(client: docker.DockerClient, *images: str) -> None:
    for image in images:
        try:
            client.images.remove(image)
        except docker.errors.ImageNotFound:
            continue


@pytest.mark.parametrize("buildkit", ["0", "1"], ids=["legacy-builder", "buildkit"])
def test_the_docker_cli_builds_a_rendered_context(
    tmp_path: Path, docker_client: docker.DockerClient, buildkit: str
) -> None:
    """With the legacy builder, and with BuildKit (buildx), which docker/build-push-action uses."""
    tag, reference = tags(f"docker-buildkit{buildkit}")
    where = tmp_path / "repo"
    context = render_context(where)
    try:
        built = subprocess.run(
            [DOCKER_CLI, "build", "--quiet", "--tag", tag, context], cwd=where, capture_output=True,
            text=True, env={**os.environ, "DOCKER_BUILDKIT": buildkit}, check=False,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        build_with_qimg(reference, {})
        labels = docker_client.images.get(tag).labels
        assert labels == docker_client.images.get(reference).labels
        assert labels["io.qimg.user"] == "alice"
        assert_checks_pass(tag, {}, docker_host())
    finally:
        remove(docker_client, tag, reference)


def test_podman_builds_a_rendered_context(tmp_path: Path, podman_rootful: str) -> None:
    """`podman build` (rootful: root's store, which the Podman service of the suite serves), then the
    same spec built by qimg through that service, and checked there."""
    tag, reference = tags("podman")
    where = tmp_path / "repo"
    context = render_context(where)
    podman = docker.DockerClient(base_url=podman_rootful)
    on_podman = {"DOCKER_HOST": podman_rootful}
    try:
        built = subprocess.run(
            ["podman", "build", "--quiet", "--tag", tag, context], cwd=where, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        build_with_qimg(reference, on_podman)
        labels = podman.images.get(tag).labels
        assert labels == podman.images.get(reference).labels
        assert labels["io.qimg.user"] == "alice"
        assert_checks_pass(tag, on_podman, podman_rootful)
    finally:
        remove(podman, tag, reference)
        podman.close()
