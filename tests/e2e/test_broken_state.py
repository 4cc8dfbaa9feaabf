"""qimg with broken or contended state, as a user runs it on the local engine: a broken record is
said once and the rest works, state that cannot be written is one line and stops the task it
launched, and two launches of one name launch one task."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from qimg.launcher.backends.local import NAME_LABEL, TASK_LABEL
from tests.e2e.conftest import IMAGE, User
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker


@pytest.fixture
def name(docker_client: docker.DockerClient) -> Iterator[str]:
    """A task name of this test alone (other tests share the engine); its containers go at the end."""
    task_name = f"brk-{uuid.uuid4().hex[:8]}"
    yield task_name
    for container in containers_of(docker_client, task_name):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def containers_of(client: docker.DockerClient, task_name: str) -> list[Container]:
    return client.containers.list(all=True, filters={"label": f"{NAME_LABEL}={task_name}"})


def state(user: User) -> Path:
    return Path(user.env["XDG_STATE_HOME"]) / "qimg"


def start(user: User, *args: str) -> subprocess.Popen[str]:
    return user.background(*args)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_the_ssh_config_cannot_be_written(
    docker_client: docker.DockerClient, e2e_image: str, user: User, name: str
) -> None:
    """The task is ready but its pins cannot be saved: one line, exit 1, and the task is stopped."""
    (state(user) / "ssh" / "config").mkdir(parents=True)
    result = user.qimg("run", "--local", e2e_image, "--name", name, "--command", "true")
    assert result.returncode == 1, result.stderr
    assert last_line(result) == (
        f"qimg: error: cannot write {state(user)}/ssh/config: Is a directory; a folder is in its place: "
        "move it away"
    )
    assert "stopped and deleted" in result.stderr
    assert containers_of(docker_client, name) == []
    assert not (state(user) / "tasks" / f"{name}.json").exists()


def test_a_file_in_place_of_the_sockets_folder(
    docker_client: docker.DockerClient, e2e_image: str, user: User, name: str
) -> None:
    """(F14) `ssh/cm` a file was a traceback once the task was ready: one line, and the task stopped."""
    (state(user) / "ssh").mkdir(parents=True)
    (state(user) / "ssh" / "cm").write_text("")
    result = user.qimg("run", "--local", e2e_image, "--name", name, "--command", "true")
    assert result.returncode == 1, result.stderr
    assert last_line(result) == (
        f"qimg: error: cannot make the folder {state(user)}/ssh/cm: a file is in its place: move it away"
    )
    assert "stopped and deleted" in result.stderr
    assert containers_of(docker_client, name) == []


def test_a_records_folder_that_is_a_file(
    docker_client: docker.DockerClient, e2e_image: str, user: User, name: str
) -> None:
    """Nothing is launched that could not be recorded."""
    state(user).mkdir(parents=True)
    (state(user) / "tasks").write_text("")
    result = user.qimg("run", "--local", e2e_image, "--name", name, "--command", "true")
    assert_one_line_error(result, 1, f"{state(user)}/tasks is a file where a folder belongs: move it away")
    assert containers_of(docker_client, name) == []


def test_a_broken_record_is_said_once_and_the_rest_works(
    docker_client: docker.DockerClient, e2e_image: str, user: User, name: str
) -> None:
    tasks = state(user) / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "junk.json").write_text('{"name": "junk", "backend": "local"}')
    result = user.qimg("run", "--local", e2e_image, "--name", name, "--command", "echo works")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "works\n"
    assert result.stderr.count("junk.json is unreadable") == 1 and "Traceback" not in result.stderr
    assert (tasks / "broken").is_dir() and not (tasks / "junk.json").exists()
    listed = user.qimg("ls", "--local")
    assert listed.returncode == 0 and listed.stderr == ""  # said once: it is set aside
    (tasks / "junk2.json").mkdir()
    listed = user.qimg("ls", "--local")
    assert listed.returncode == 0
    (line,) = listed.stderr.splitlines()
    assert line.startswith(f"qimg: warning: task record {tasks}/junk2.json is unreadable (")
    assert containers_of(docker_client, name) == []


def test_records_that_block_or_never_end_are_set_aside(
    docker_client: docker.DockerClient, e2e_image: str, user: User, name: str
) -> None:
    """(F8) A record that is a FIFO, or a link to one, blocked `run` forever once ready, holding the ssh
    files' lock; one linked to /dev/zero ran out of memory. Each is set aside with one line."""
    tasks = state(user) / "tasks"
    tasks.mkdir(parents=True)
    os.mkfifo(tasks / "a-fifo.json")
    os.mkfifo(state(user) / "fifo")
    (tasks / "b-link.json").symlink_to(state(user) / "fifo")
    (tasks / "c-zero.json").symlink_to("/dev/zero")
    result = user.qimg("run", "--local", e2e_image, "--name", name, "--command", "echo works", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "works\n"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("task record ")]
    assert len(warnings) == 3 and "Traceback" not in result.stderr, result.stderr
    assert sum("a FIFO, not a regular file), moved aside" in line for line in warnings) == 2
    assert sum("a character device, not a regular file), moved aside" in line for line in warnings) == 1
    assert sorted(path.name for path in tasks.iterdir() if not path.name.startswith(".")) == ["broken"]
    assert containers_of(docker_client, name) == []


def test_stop_a_task_whose_record_is_broken(
    docker_client: docker.DockerClient, e2e_image: str, user: User, name: str
) -> None:
    assert user.qimg("run", "--local", e2e_image, "--name", name).returncode == 0
    (state(user) / "tasks" / f"{name}.json").write_text("{garbled")
    stopped = user.qimg("stop", name, "--local")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"stopped {name} (")
    (line,) = stopped.stderr.splitlines()
    assert line.startswith("qimg: warning: task record ") and "moved aside" in line
    assert containers_of(docker_client, name) == []


def test_a_build_that_cannot_be_remembered(e2e_image: str, tmp_path: Path) -> None:
    (tmp_path / "qimg" / "last-image").mkdir(parents=True)
    # the state: tmp_path (tests/conftest.py isolate); the build is cached: e2e_image built it
    result = run_qimg("build", "--user", "alice", "--package", "busybox", "--tag", IMAGE)
    assert result.returncode == 1
    assert last_line(result).startswith(
        f"qimg: error: {IMAGE} was built, but cannot be remembered as the last image built (cannot write "
    )
    assert f"meanwhile name it: qimg check/push/run --local {IMAGE}" in last_line(result)


def test_two_launches_of_one_name(
    docker_client: docker.DockerClient, e2e_image: str, user: User, name: str
) -> None:
    """Started together: one launches the task, the other is refused before it creates anything."""
    runs = [start(user, "run", "--local", e2e_image, "--name", name) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], results
    refused = next(stderr for run, (_, stderr) in zip(runs, results, strict=True) if run.returncode == 2)
    (line,) = refused.splitlines()
    assert line.startswith(f"qimg: error: --name {name}: ")  # launching now, or running: either way refused
    tasks = {container.labels[TASK_LABEL] for container in containers_of(docker_client, name)}
    assert len(tasks) == 1
    assert user.qimg("stop", name, "--local").returncode == 0
    assert containers_of(docker_client, name) == []
