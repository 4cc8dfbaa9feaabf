"""`qimg build --devcontainer` on both builders (BuildKit and the legacy one, DOCKER_BUILDKIT=1 and 0): the
project's Dockerfile with its args and target, and containerEnv values that mean something to a
Dockerfile or a shell (quotes, backslashes, `$`), which reach the image as written."""

from __future__ import annotations

import json

import docker
import pytest

from tests.e2e.conftest import User
from tests.helpers import run_qimg

pytestmark = pytest.mark.docker

ENV = {
    "QUOTED": 'say "hi" and \\ back',
    "DOLLAR": "$HOME and ${NOT_A_VARIABLE} and \\$x",
    "SPACES": "  leading and trailing  ",
    "UNICODE": "café ✓",
    "SINGLE": "it's",
    "EMPTY": "",
}
DOCKERFILE = """\
FROM debian:bookworm-slim AS base
ARG WHO
RUN echo "$WHO" > /etc/who
FROM base AS dev
ARG GREETING=unset
RUN echo "$GREETING" > /etc/greeting
FROM base AS unused
RUN false
"""


@pytest.mark.parametrize("buildkit", ["1", "0"])
def test_dockerfile_args_target_and_env_on_both_builders(
    buildkit: str, user: User, docker_client: docker.DockerClient
) -> None:
    project = user.workdir / f"builders{buildkit}"
    (project / ".devcontainer").mkdir(parents=True)
    (project / ".devcontainer" / "Dockerfile").write_text(DOCKERFILE)
    config = {
        "build": {
            "dockerfile": "Dockerfile",
            "args": {"GREETING": "hi $there", "WHO": "me"},
            "target": "dev",
        },
        "containerEnv": ENV,
    }
    (project / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    tag = f"qimgtest/devcontainer-builder{buildkit}:latest"
    built = run_qimg(
        "build",
        "--devcontainer",
        "--tag",
        tag,
        "--json",
        env={**user.env, "DOCKER_BUILDKIT": buildkit},
        cwd=project,
    )
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["builder"] == ("buildkit" if buildkit == "1" else "legacy")
    image = docker_client.images.get(tag)
    found = dict(entry.split("=", 1) for entry in image.attrs["Config"]["Env"])
    assert {name: found.get(name) for name in ENV} == ENV
    shown = docker_client.containers.run(
        tag, ["cat", "/etc/greeting", "/etc/who"], entrypoint=[], remove=True
    )
    assert shown.decode() == "hi $there\nme\n"
