"""`qimg build --devcontainer` with a remoteUser the base already has, on each local engine: rootless
Podman maps the container's uids onto a range of the user's own (subuid), and an existing user keeps its
uid, group, home and shell there as on Docker. The uid and gid are not qimg's default (1000): a build that
made the user afresh would show. A local feature writes files the login user owns (the specification's
`_REMOTE_USER`), which the user can then change in a session."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import User
from tests.e2e.processes import named_tasks

pytestmark = pytest.mark.docker

TAG = "qimgtest/devcontainer-users:latest"
DOCKERFILE = """\
FROM debian:bookworm-slim
RUN groupadd -g 2345 lab && useradd -m -d /data/sci -u 1234 -g lab -s /bin/bash sci
"""
DEVCONTAINER = {
    "build": {"dockerfile": "Dockerfile"},
    "remoteUser": "sci",
    "features": {"./settings": {}},
}
FEATURE = {"id": "settings", "version": "1.0.0"}
INSTALL = """#!/bin/sh
set -e
mkdir -p "$_REMOTE_USER_HOME/.config/settings" /opt/settings
echo from-the-feature > "$_REMOTE_USER_HOME/.config/settings/conf"
echo shared > /opt/settings/state
chown -R "$_REMOTE_USER:" "$_REMOTE_USER_HOME/.config" /opt/settings
"""
PROBE = """
echo "ids=$(id -u):$(id -g) $(id -un):$(id -gn) $HOME $(getent passwd sci | cut -d: -f7)"
echo "conf=$(stat -c '%u:%g %U:%G' ~/.config/settings/conf) $(cat ~/.config/settings/conf)"
echo "state=$(stat -c '%u:%g' /opt/settings/state)"
echo changed >> ~/.config/settings/conf && echo changed >> /opt/settings/state && echo "written=yes"
echo "ssh=$(stat -c '%u:%g %a' ~/.ssh ~/.ssh/authorized_keys | tr '\\n' ' ')"
"""


def make_project(root: Path) -> Path:
    project = root / "users"
    feature = project / ".devcontainer" / "settings"
    feature.mkdir(parents=True)
    (project / ".devcontainer" / "Dockerfile").write_text(DOCKERFILE)
    (project / ".devcontainer" / "devcontainer.json").write_text(json.dumps(DEVCONTAINER))
    (feature / "devcontainer-feature.json").write_text(json.dumps(FEATURE))
    (feature / "install.sh").write_text(INSTALL)
    return project


def test_an_existing_user_keeps_its_ids_and_owns_what_a_feature_wrote(
    local_user: User, engine_client: docker.DockerClient
) -> None:
    built = local_user.qimg(
        "build", "--devcontainer", "--tag", TAG, "--json", cwd=make_project(local_user.workdir)
    )
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["user"] == "sci"
    checked = local_user.qimg("check", TAG, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["passed"] is True
    ran = local_user.qimg("run", "--local", TAG, "--name", "dcu", "--command", PROBE)
    assert ran.returncode == 0, ran.stderr
    found = dict(line.split("=", 1) for line in ran.stdout.splitlines() if "=" in line)
    assert found["ids"] == "1234:2345 sci:lab /data/sci /bin/bash"
    assert found["conf"] == "1234:2345 sci:lab from-the-feature"
    assert found["state"] == "1234:2345"
    assert found["written"] == "yes"
    assert found["ssh"].split() == ["1234:2345", "700", "1234:2345", "600"]
    assert named_tasks(engine_client, "dcu") == []
    engine_client.images.remove(TAG)
