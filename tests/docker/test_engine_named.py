"""`qimg ls --local` and `qimg stop --local` name the engine they listed or stopped on (a context
the docker CLI made, DOCKER_HOST, or the local socket): in its title, and additively in its JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.helpers import run_qimg

pytestmark = pytest.mark.docker
SOCKET = "unix:///var/run/docker.sock"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, f"the local engine ({SOCKET})"),
        ({"DOCKER_CONTEXT": "here"}, f"context here ({SOCKET})"),
        ({"DOCKER_HOST": SOCKET, "DOCKER_CONTEXT": "here"}, f"DOCKER_HOST={SOCKET}"),
    ],
)
def test_ls_local_names_its_engine(env: dict[str, str], named: str) -> None:
    docker = shutil.which("docker") or "docker"
    subprocess.run(
        [docker, "context", "create", "here", "--docker", f"host={SOCKET}"], check=True, env=os.environ
    )
    listed = run_qimg("ls", "--local", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["engine"] == named and document["backend"] == "local"
    assert isinstance(document["tasks"], list)
    shown = run_qimg("ls", "--local", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1] == f"engine: {named}"
    stopped = run_qimg("stop", "--all", "--local", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines()[-1] == f"engine: {named}"
