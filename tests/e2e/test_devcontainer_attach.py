"""A devcontainer's postAttachCommand: run in the task each time qimg attaches a session (`qimg ssh NAME`
without a command, run's own session), as the login user, after the post-start commands, its output in
`qimg logs`; a command run through ssh is no attach."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import User
from tests.helpers import run_qimg

pytestmark = pytest.mark.docker

TAG = "qimgtest/devcontainer-attach:latest"
DEVCONTAINER = {
    "image": "debian:bookworm-slim",
    "remoteUser": "dev",
    # Slow on purpose: an attach made while it runs is answered after it.
    "postStartCommand": "sleep 2; echo started > /tmp/started",
    "postAttachCommand": {
        "log": ["sh", "-c", 'echo "attach by $(id -un) after $(cat /tmp/started)" >> /tmp/attached'],
    },
}
ATTACH_LINE = "attach by dev after started"


def attached(user: User, name: str, count: int) -> list[str]:
    """The task's /tmp/attached once it has `count` lines (a minute at most: the hook runs in the
    background of the task)."""
    lines: list[str] = []
    for _ in range(300):
        shown = user.qimg("ssh", name, "--local", "--", "cat /tmp/attached 2>/dev/null || true")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        if len(lines) >= count:
            return lines
        time.sleep(0.2)
    pytest.fail(f"{count} attaches expected, the task saw {lines}")


@pytest.fixture(scope="module")
def attach_image(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> str:
    project = tmp_path_factory.mktemp("attach-project")
    (project / ".devcontainer.json").write_text(json.dumps(DEVCONTAINER))
    built = run_qimg("build", "--devcontainer", str(project / ".devcontainer.json"), "--tag", TAG)
    assert built.returncode == 0, built.stderr
    assert docker_client.images.get(TAG).labels["io.qimg.lifecycle"] == "postStartCommand,postAttachCommand"
    return TAG


def test_each_session_qimg_attaches_runs_the_hook_after_the_start_commands(
    attach_image: str, user: User, tmp_path: Path
) -> None:
    kept = user.qimg("run", "--local", attach_image, "--name", "att")
    assert kept.returncode == 0, kept.stderr
    try:
        first = user.qimg("ssh", "att", "--local", stdin="exit\n")  # a session: the user's shell
        assert first.returncode == 0, first.stderr
        assert attached(user, "att", 1) == [ATTACH_LINE]  # after the slow postStartCommand
        # VS Code opened by qimg code attaches too (a `code` of the test's, which only says it ran).
        fake_bin = tmp_path / "bin"
        fake_bin.mkdir()
        (fake_bin / "code").write_text("#!/bin/sh\nexit 0\n")
        (fake_bin / "code").chmod(0o755)
        opened = run_qimg(
            "code", "att", "--local", env={**user.env, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
        )
        assert opened.returncode == 0, opened.stderr
        lines = attached(user, "att", 2)  # each `ssh -- CMD` of the wait is no attach: two, not more
        assert lines == [ATTACH_LINE] * 2
        for _ in range(300):  # the runner says "done" once the hook's commands have ended
            logs = user.qimg("logs", "att", "--local").stdout
            if logs.count("qimg-lifecycle: postAttachCommand: done") == 2:
                break
            time.sleep(0.2)
        assert logs.count("qimg-lifecycle: postAttachCommand (log): running as dev") == 2, logs
        assert logs.count("qimg-lifecycle: postAttachCommand: done") == 2, logs
    finally:
        assert user.qimg("stop", "att", "--local").returncode == 0


def test_the_attach_file_is_the_login_users_alone(attach_image: str, user: User, tmp_path: Path) -> None:
    """Only the login user (and root) may ask for an attach: the file is theirs, mode 0600, in a folder
    of root's."""
    kept = user.qimg("run", "--local", attach_image, "--name", "attf")
    assert kept.returncode == 0, kept.stderr
    try:
        shown = user.qimg("ssh", "attf", "--local", "--", "stat -c '%U %a' /run/qimg/attached /run/qimg")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines() == ["dev 600", "root 755"]
    finally:
        assert user.qimg("stop", "attf", "--local").returncode == 0
