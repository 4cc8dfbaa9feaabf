"""`qimg build --devcontainer` with a remoteUser the base already has, on each local engine: rootless
Podman maps the container's uids onto a range of the user's own (subuid), and an existing user keeps its
uid, group, home and shell there as on Docker. The uid and gid are not qimg's default (1000): a build that
made the user afresh would show. A local feature writes files the login user owns (the specification's
`_REMOTE_USER`), which the user can then change in a session. A uid beyond the ids rootless Podman maps
is named as such by qimg's setup step."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import User
from tests.e2e.processes import named_tasks
from tests.engines import LocalEngine
from tests.helpers import write_feature

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
    write_feature(project / ".devcontainer" / "settings", FEATURE, INSTALL)
    (project / ".devcontainer" / "Dockerfile").write_text(DOCKERFILE)
    (project / ".devcontainer" / "devcontainer.json").write_text(json.dumps(DEVCONTAINER))
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


@pytest.mark.parametrize("local_engine", ["podman-rootless"], indirect=True)
def test_a_user_beyond_rootless_podmans_ids_fails_at_its_own_step(
    local_user: User, engine_client: docker.DockerClient
) -> None:
    """Rootless Podman maps 65536 ids: the base's user (its Dockerfile's useradd passes) has a uid beyond
    them, which no file can be given there. qimg's setup step says so, naming the ids the engine maps,
    instead of chown's bare "Invalid argument"; the build fails at that step (exit 1, no traceback) and
    nothing is tagged."""
    project = make_project(local_user.workdir)
    dockerfile = project / ".devcontainer" / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.replace("-u 1234", "-u 70000"))
    failed = local_user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr and "Invalid argument" not in failed.stderr
    *shown, last = failed.stderr.strip().splitlines()
    said = "qimg-setup: uid 70000 is not among the ids this engine maps (0-0, 1-65536): rootless Podman"
    assert any(line.strip().startswith(said) for line in shown), failed.stderr
    assert last.startswith("qimg: error: build failed at step ") and "qimg-setup" in last, last
    assert not engine_client.images.list(name=TAG)


def test_a_uid_beyond_65536_where_the_engine_maps_it_or_not(
    local_user: User, local_engine: LocalEngine, engine_client: docker.DockerClient
) -> None:
    """`--uid 70000`: Docker and rootful Podman map every id, and the image is built; rootless Podman maps
    65536, and the setup step says so in its own line (the check reads the build's user namespace)."""
    tag = "qimgtest/large-uid:latest"
    built = local_user.qimg("build", "--user", "bob", "--uid", "70000", "--gid", "70000", "--tag", tag)
    if local_engine.name == "podman-rootless":
        assert built.returncode == 1, built.stderr
        assert "qimg-setup: uid 70000 is not among the ids this engine maps" in built.stderr
        assert "Traceback" not in built.stderr and not engine_client.images.list(name=tag)
        return
    assert built.returncode == 0, built.stderr
    labels = engine_client.images.get(tag).labels
    assert (labels["io.qimg.uid"], labels["io.qimg.gid"]) == ("70000", "70000")
    engine_client.images.remove(tag)
