"""`qimg run --idle-stop`: the watcher baked into qimg images stops a task nobody uses, never one with
an ssh session open, and `qimg ls` shows when it will stop. Real OpenSSH client, local engine."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from qimg.launcher.backends.local import NAME_LABEL
from tests.e2e.conftest import User
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker

STOPPING = "qimg-idle: no ssh session for {} s: stopping sshd"


def task_container(client: docker.DockerClient, name: str) -> Container:
    (container,) = client.containers.list(all=True, filters={"label": f"{NAME_LABEL}={name}"})
    return container


def wait_until_exited(client: docker.DockerClient, name: str) -> dict[str, object]:
    """The container's state once it has exited; a bounded wait, so that a watcher that never fires
    fails the test instead of hanging it."""
    deadline = time.monotonic() + 90
    while True:
        state: dict[str, object] = task_container(client, name).attrs["State"]
        if state["Status"] == "exited":
            return state
        assert time.monotonic() < deadline, f"{name} is still {state['Status']}: the idle stop never fired"
        time.sleep(0.5)


def stop_and_check_nothing_left(client: docker.DockerClient, user: User, name: str) -> None:
    assert user.qimg("stop", name, "--local").returncode == 0
    assert client.containers.list(all=True, filters={"label": f"{NAME_LABEL}={name}"}) == []


def ssh_argv(user: User, name: str, *command: str) -> list[str]:
    config = Path(user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config"
    return ["ssh", "-F", str(config), f"qimg-{name}", *command]


def test_a_task_nobody_logs_into_stops_itself(
    docker_client: docker.DockerClient, e2e_image: str, user: User
) -> None:
    launched = user.qimg("run", "--local", e2e_image, "--idle-stop", "3", "--name", "unused")
    assert launched.returncode == 0, launched.stderr
    state = wait_until_exited(docker_client, "unused")
    assert state["ExitCode"] == 0  # sshd ended on SIGTERM: the task succeeded, nothing failed
    logs = user.qimg("logs", "unused", "--local").stdout
    announced = re.findall(r"^0> qimg-idle: stop-at (\d+) ", logs, re.M)
    assert announced, logs
    assert logs.rstrip().endswith(STOPPING.format(3)), logs
    finished = datetime.fromisoformat(str(state["FinishedAt"])[:26].rstrip("Z") + "+00:00")
    assert finished.timestamp() >= int(announced[-1]), "it stopped before the time it announced"
    stop_and_check_nothing_left(docker_client, user, "unused")


def test_an_open_session_holds_the_idle_stop(
    docker_client: docker.DockerClient, e2e_image: str, user: User
) -> None:
    """A plain ssh session (the user's own client, through qimg's config) holds the task for twice the
    idle time; once it closes, the clock starts again and the task stops."""
    launched = user.qimg("run", "--local", e2e_image, "--idle-stop", "5", "--name", "held")
    assert launched.returncode == 0, launched.stderr
    session = subprocess.run(
        ssh_argv(user, "held", "sleep", "10"), capture_output=True, text=True, timeout=60, check=False
    )
    assert session.returncode == 0, session.stderr
    assert task_container(docker_client, "held").attrs["State"]["Status"] == "running"
    wait_until_exited(docker_client, "held")
    watcher = [
        line for line in user.qimg("logs", "held", "--local").stdout.splitlines() if "qimg-idle:" in line
    ]
    # (the readiness login may have been seen as a session too: only the end is certain)
    assert [line.split()[2] for line in watcher[-3:]] == ["in-use", "stop-at", "no"], watcher
    assert watcher[-1] == "0> " + STOPPING.format(5)
    stop_and_check_nothing_left(docker_client, user, "held")


def test_a_command_session_holds_it_too(
    docker_client: docker.DockerClient, e2e_image: str, user: User
) -> None:
    """`run --command` with --keep: the command runs longer than the idle time, the task outlives it."""
    result = user.qimg(
        "run", "--local", e2e_image, "--idle-stop", "3", "--keep", "--name", "busy", "--command", "sleep 8"
    )
    assert result.returncode == 0, result.stderr
    assert task_container(docker_client, "busy").attrs["State"]["Status"] == "running"
    wait_until_exited(docker_client, "busy")
    assert "0> qimg-idle: in-use" in user.qimg("logs", "busy", "--local").stdout
    stop_and_check_nothing_left(docker_client, user, "busy")


def listed(user: User) -> dict[str, dict[str, Any]]:
    result = user.qimg("ls", "--local", "--json")
    assert result.returncode == 0, result.stderr
    return {task["name"]: task for task in json.loads(result.stdout)["tasks"]}


def idle_stop_once(user: User, name: str, session_open: bool) -> dict[str, Any]:
    """The task's idle stop in `ls --json`, once it says that a session is open or not: the watcher
    prints in the background, so its latest line may come a moment after the event."""
    deadline = time.monotonic() + 60
    while True:
        idle = listed(user)[name]["idle_stop"]
        if idle is not None and idle["session_open"] is session_open:
            return dict(idle)
        assert time.monotonic() < deadline, f"ls never showed session_open {session_open}: {idle}"
        time.sleep(0.5)


def test_ls_shows_when_it_stops(docker_client: docker.DockerClient, e2e_image: str, user: User) -> None:
    assert user.qimg("run", "--local", e2e_image, "--idle-stop", "1h", "--name", "later").returncode == 0
    assert user.qimg("run", "--local", e2e_image, "--name", "never").returncode == 0
    try:
        first = idle_stop_once(user, "later", session_open=False)
        assert 0 < first["seconds_left"] <= 3600, first
        assert listed(user)["never"]["idle_stop"] is None
        table = wide_table(user)
        assert "idle stop" in table and re.search(r"later .* in [01]h\d\dm", table), table
        session = subprocess.Popen(ssh_argv(user, "later", "sleep", "60"), stdin=subprocess.DEVNULL)
        try:
            idle = idle_stop_once(user, "later", session_open=True)
            assert idle == {"session_open": True, "seconds_left": None, "stop_at": None}
            assert re.search(r"later .* session open", wide_table(user))
        finally:
            session.terminate()
            session.wait(timeout=30)
        restarted = idle_stop_once(user, "later", session_open=False)
        assert datetime.fromisoformat(restarted["stop_at"]) > datetime.fromisoformat(first["stop_at"])
    finally:
        for name in ("later", "never"):  # by name: other tests use the same engine
            stop_and_check_nothing_left(docker_client, user, name)


def wide_table(user: User) -> str:
    """`qimg ls` as a table wide enough for every column (other tests' tasks share the engine)."""
    result = run_qimg("ls", "--local", env={**user.env, "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_idle_stop_needs_an_image_qimg_built(
    docker_client: docker.DockerClient, e2e_image: str, user: User, tmp_path: Path
) -> None:
    """An image without the watcher would never stop: refused before any task exists."""
    (tmp_path / "Dockerfile").write_text(f'FROM {e2e_image}\nLABEL io.qimg.user="" io.qimg.start=""\n')
    docker_client.images.build(path=str(tmp_path), tag="qimgtest/foreign-idle:latest", rm=True)
    refused = user.qimg("run", "--local", "qimgtest/foreign-idle:latest", "--idle-stop", "30m")
    assert_one_line_error(refused, 2, "--idle-stop", "not built by qimg")
