"""`qimg build --devcontainer`: a project's devcontainer.json with a Dockerfile build (args, target), a
remoteUser the base already has (uid 1000, its own home and shell), a local feature with options,
forwardPorts, containerEnv and remoteEnv, and lifecycle commands in their three forms; built, checked
and run on each local engine (Docker, rootful and rootless Podman), and on the fake Qarnot API, logged
into with the pinned key."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import User
from tests.e2e.processes import named_tasks
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import Registry
from tests.helpers import write_feature

pytestmark = pytest.mark.docker

TAG = "qimgtest/devcontainer-e2e:latest"

DEVCONTAINER = """\
// The project's development environment, as VS Code reads it.
{
  "name": "e2e",
  "build": {
    "dockerfile": "Dockerfile",
    "context": "..",
    "args": { "GREETING": "hello from the build" },
    "target": "dev",
  },
  "remoteUser": "dev",
  "features": {
    "./marker": { "flavour": "mint", "loud": true },
  },
  "forwardPorts": [8888],
  "portsAttributes": { "8888": { "label": "Jupyter" } },
  "containerEnv": { "PROJECT_MODE": "say \\"dev\\" and $HOME" },
  "remoteEnv": {
    "PATH": "${containerEnv:PATH}:/opt/project/bin",
    "EDITOR_OF_CHOICE": "${localWorkspaceFolderBasename}",
  },
  "postCreateCommand": ["sh", "-c", "pwd > /tmp/created-in; id -un > /tmp/created-by"],
  "postStartCommand": {
    "first": "echo started-first > /tmp/started-first",
    "second": ["sh", "-c", "echo \\"$PROJECT_MODE\\" > /tmp/started-second"],
  },
  "customizations": { "vscode": { "extensions": ["ms-python.python"] } },
}
"""
DOCKERFILE = """\
FROM debian:bookworm-slim AS base
FROM base AS dev
ARG GREETING
RUN useradd -m -d /srv/dev -u 1000 -s /bin/sh dev && echo "$GREETING" > /etc/greeting
FROM base AS other
RUN false
"""
FEATURE = {"id": "marker", "version": "1.0.0", "options": {
    "flavour": {"type": "string", "default": "plain", "enum": ["plain", "mint"]},
    "loud": {"type": "boolean", "default": False},
    "size": {"type": "string", "default": "medium"},
}, "containerEnv": {"MARKER_HOME": "/opt/marker"}}  # fmt: skip
INSTALL = """#!/bin/sh
set -e
mkdir -p /opt/marker
echo "$FLAVOUR $LOUD $SIZE $_REMOTE_USER $_REMOTE_USER_HOME $MARKER_HOME" > /opt/marker/installed
"""

# Run as the login user (qimg run --command: a login shell), after the post-start commands are done.
PROBE = r"""
for i in $(seq 100); do [ -s /tmp/started-second ] && [ -s /tmp/created-by ] && break; sleep 0.2; done
echo "feature=$(cat /opt/marker/installed)"
echo "greeting=$(cat /etc/greeting)"
echo "who=$(id -un) $(id -u) $(getent passwd dev | cut -d: -f6,7)"
echo "mode=$PROJECT_MODE"
echo "path=$PATH"
echo "editor=$EDITOR_OF_CHOICE"
echo "created=$(cat /tmp/created-by) in $(cat /tmp/created-in)"
echo "started=$(cat /tmp/started-first) $(cat /tmp/started-second)"
echo "workspace=$(stat -c %U /workspaces/project)"
"""


def make_project(root: Path) -> Path:
    project = root / "project"
    write_feature(project / ".devcontainer" / "marker", FEATURE, INSTALL)
    (project / ".devcontainer" / "devcontainer.json").write_text(DEVCONTAINER)
    (project / ".devcontainer" / "Dockerfile").write_text(DOCKERFILE)
    return project


def facts(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def check_probe(found: dict[str, str]) -> None:
    assert found["feature"] == "mint true medium dev /srv/dev /opt/marker"
    assert found["greeting"] == "hello from the build"
    assert found["who"] == "dev 1000 /srv/dev:/bin/sh"  # the base's user: its uid, home and shell
    assert found["mode"] == 'say "dev" and $HOME'  # containerEnv as written
    assert found["path"].endswith(":/opt/project/bin") and "/usr/bin" in found["path"]
    assert found["editor"] == "project"
    assert found["created"] == "dev in /workspaces/project"
    assert found["started"] == 'started-first say "dev" and $HOME'
    assert found["workspace"] == "dev"


def build_project(user: User) -> subprocess.CompletedProcess[str]:
    return user.qimg("build", "--devcontainer", "--tag", TAG, "--json", cwd=make_project(user.workdir))


def test_devcontainer_built_checked_and_run_locally(
    local_user: User, engine_client: docker.DockerClient
) -> None:
    """On each local engine (Docker, rootful and rootless Podman): built there, checked there, run there."""
    built = build_project(local_user)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["user"] == "dev"
    assert "RUN useradd -m -d /srv/dev" in built.stderr  # the project's Dockerfile, shown as it is built
    labels = engine_client.images.get(TAG).labels
    assert labels["io.qimg.forward-ports"] == "8888" and labels["io.qimg.port-labels"] == "8888=Jupyter"
    assert labels["io.qimg.workspace-folder"] == "/workspaces/project"
    assert labels["io.qimg.vscode-extensions"] == "ms-python.python"
    assert labels["io.qimg.lifecycle"] == "postCreateCommand,postStartCommand"

    checked = local_user.qimg("check", TAG, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["passed"] is True

    local = local_user.qimg("run", "--local", TAG, "--name", "dcl", "--command", PROBE)
    assert local.returncode == 0, local.stderr
    check_probe(facts(local.stdout))

    # The lifecycle commands' own lines are the task's output (qimg logs), as a kept task shows them.
    kept = local_user.qimg("run", "--local", TAG, "--name", "dck", "--no-tunnel")  # returns once ready
    assert kept.returncode == 0, kept.stderr
    try:
        waited = local_user.qimg("ssh", "dck", "--", "sh -lc " + shlex.quote(PROBE))
        assert waited.returncode == 0, waited.stderr
        logs = local_user.qimg("logs", "dck", "--local")
        assert "qimg-lifecycle: postCreateCommand: running as dev" in logs.stdout, logs.stdout
        assert "qimg-lifecycle: postStartCommand (first): running as dev" in logs.stdout
        assert "qimg-lifecycle: postStartCommand: done" in logs.stdout
    finally:
        assert local_user.qimg("stop", "dck", "--local").returncode == 0
    assert named_tasks(engine_client, "dcl", "dck") == []


def test_devcontainer_pushed_and_run_on_qarnot(user: User, fake: FakeQarnot, auth_registry: Registry) -> None:
    built = build_project(user)  # on Docker, the engine the fake Qarnot runs its tasks on
    assert built.returncode == 0, built.stderr
    target = user.push_to(TAG, auth_registry, "team/devcontainer:e2e")
    remote = user.launch(target, "--command", PROBE)
    assert remote.returncode == 0, remote.stderr
    check_probe(facts(remote.stdout))
    assert fake.tasks == {}
