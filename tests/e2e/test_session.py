"""The launcher called directly, as a program would use it: no subprocess, no terminal."""

from __future__ import annotations

import docker
import pytest

from qimg.errors import QimgError
from qimg.launcher import records
from qimg.launcher.backends import registry
from qimg.launcher.backends.local import TASK_LABEL
from qimg.launcher.options import LaunchOptions
from qimg.launcher.plan import plan_launch
from qimg.launcher.session import run_task
from tests.e2e.conftest import User
from tests.helpers import Recorder

pytestmark = pytest.mark.docker


@pytest.fixture
def as_user(user: User, monkeypatch: pytest.MonkeyPatch) -> User:
    for name, value in user.env.items():
        monkeypatch.setenv(name, value)
    return user


def local_containers(client: docker.DockerClient) -> list[str]:
    return [c.id or "" for c in client.containers.list(all=True, filters={"label": TASK_LABEL})]


def test_a_whole_local_launch(
    docker_client: docker.DockerClient, e2e_image: str, as_user: User, capfd: pytest.CaptureFixture[str]
) -> None:
    options = LaunchOptions(
        image=e2e_image,
        backend=registry.LOCAL,
        key=as_user.public_key,
        name="direct",
        command="id -un; echo $INSTANCE_ID",
    )
    recorder = Recorder()
    code = run_task(plan_launch(options), recorder)
    assert code == 0
    assert capfd.readouterr().out.split() == ["alice", "0"]  # ssh wrote the command's output
    (record,) = recorder.ready_records
    assert record.name == "direct" and record.user == "alice" and record.backend == "local"
    assert record.instances[0].host_keys[0].startswith("ssh-ed25519 ")
    assert "FullyExecuting" in recorder.states
    assert recorder.notes[-1] == f"task {record.task_id} stopped and deleted"
    assert local_containers(docker_client) == [] and records.load("direct") is None


def test_a_caller_that_fails_at_ready_leaves_no_task(
    docker_client: docker.DockerClient, e2e_image: str, as_user: User
) -> None:
    """Whatever goes wrong once the task exists, the lifecycle stops it (nobody asked to keep it)."""
    options = LaunchOptions(image=e2e_image, backend=registry.LOCAL, key=as_user.public_key, name="failing")
    recorder = Recorder(fail_on_ready=True)
    with pytest.raises(QimgError, match="could not show the task"):
        run_task(plan_launch(options), recorder)
    assert recorder.ready_records and "stopped and deleted" in recorder.notes[-1]
    assert local_containers(docker_client) == [] and records.load("failing") is None
