"""`qimg run` on "Qarnot": the real SDK against the fake API, which runs the pushed image for real."""

from __future__ import annotations

import base64
import itertools
import json
import re
import signal
import subprocess
import time
import urllib.request

import docker
import pytest

from qimg.launcher.backends.qarnot import REQUEST_BUDGET
from qimg.launcher.ssh import free_local_port
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot, Faults
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD, REGISTRY_USER
from tests.helpers import assert_one_line_error

pytestmark = pytest.mark.docker


def test_build_push_run_command_with_a_pinned_key(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    result = user.launch(
        pushed_image, "--command", 'id; echo "deadline=$QIMG_MAX_SECONDS"', "--max-time", "2h"
    )
    assert result.returncode == 0, result.stderr
    assert "uid=1000(alice) gid=1000(alice)" in result.stdout
    assert "deadline=7200" in result.stdout  # the login shell has the task's environment
    assert fake.count("POST", "/tasks") == 1
    (task_id,) = [path.split("/")[2] for method, path in fake.requests if method == "DELETE"]
    assert fake.tasks == {}, "the task is deleted once the command is done"
    assert REGISTRY_PASSWORD not in result.stdout + result.stderr
    assert f"task {task_id} stopped and deleted" in result.stderr
    # The pin: qimg's known_hosts holds exactly the key the container printed, under the entry's alias.
    known_hosts = (user.home.parent / "state" / "qimg" / "ssh" / "known_hosts").read_text()
    assert known_hosts == ""  # the entry went with the task


def test_constants_keep_running_ls_logs_ssh_stop(
    pushed_image: str, fake: FakeQarnot, user: User, docker_client: docker.DockerClient
) -> None:
    launched = user.launch(pushed_image, "--name", "keep1", "--json")
    assert launched.returncode == 0, launched.stderr
    info = json.loads(launched.stdout)
    (task,) = fake.tasks.values()
    registry, _, rest = pushed_image.partition("/")
    expected = {
        "DOCKER_SRV": f"http://{registry}", "DOCKER_REPO": rest.split(":")[0], "DOCKER_TAG": "e2e",
        "DOCKER_CMD": "/usr/local/sbin/qimg-start", "DOCKER_REGISTRY_LOGIN": REGISTRY_USER,
        "QARNOT_SECRET__DOCKER_REGISTRY_PASSWORD": REGISTRY_PASSWORD, "QIMG_MAX_SECONDS": str(12 * 3600),
        "DOCKER_SSH": user.public_key.read_text().strip(),
    }  # fmt: skip
    assert {name: value for name, value in task.constants.items() if name != "QIMG_DEADLINE"} == expected
    assert task.profile == "docker-network-ssh" and task.name == "keep1"
    assert task.tags[0] == "qimg" and re.fullmatch(r"qimg-launch-[0-9a-f]{16}", task.tags[1])
    assert info["task"] == {"id": task.uuid, "name": "keep1"} and info["backend"] == "qarnot"
    (instance,) = info["instances"]
    assert instance["port"] == task.instances[0].port and instance["user"] == "alice"
    assert instance["host_key"].startswith("ssh-ed25519 ")
    assert REGISTRY_PASSWORD not in launched.stdout + launched.stderr
    assert "qimg stop keep1" in launched.stderr

    before_ls = len(fake.requests)
    listed = user.qimg("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["tasks"]
    assert row["name"] == "keep1" and row["state"] == "FullyExecuting"
    assert row["endpoints"] == [f"127.0.0.1:{instance['port']}"] and row["credits"] is not None
    # Launched without --idle-stop, the task has no watcher to hear from: ls reads no output of it.
    assert not [path for _, path in fake.requests[before_ls:] if "/stdout" in path]

    logs = user.qimg("logs", "keep1")
    assert f"qimg-host-key: {instance['host_key']}" in logs.stdout
    again = user.qimg("logs", "keep1")  # [9] reading the output does not consume it
    assert again.returncode == 0 and f"qimg-host-key: {instance['host_key']}" in again.stdout

    # The printed command works as is, with the user's own ssh and qimg's files only.
    ssh = subprocess.run(
        [*instance["ssh_command"].replace("~", str(user.home)).split(), "whoami"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ssh.stdout.strip() == "alice", ssh.stderr
    assert user.qimg("ssh", "keep1", "--", "whoami").stdout.strip() == "alice"

    stopped = user.qimg("stop", "keep1")
    assert stopped.returncode == 0 and fake.tasks == {}
    assert fake.containers() == []


def test_three_instances(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    result = user.launch(pushed_image, "--instances", "3", "--command", "echo instance=$INSTANCE_ID")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["instance=0", "instance=1", "instance=2"]
    assert fake.tasks == {}


def test_tunnel_to_an_http_server_and_a_restart_on_a_new_port(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    assert user.launch(pushed_image, "--name", "web").returncode == 0
    (task,) = fake.tasks.values()
    page = "mkdir -p /tmp/www && echo hello-from-the-task > /tmp/www/index.html"
    assert (
        user.qimg("ssh", "web", "--", page, "&&", "busybox httpd -p 127.0.0.1:8000 -h /tmp/www").returncode
        == 0
    )
    local_port = free_local_port()
    tunnel = user.background("tunnel", "web", f"{local_port}:8000")
    try:
        assert _fetch(f"http://127.0.0.1:{local_port}/") == "hello-from-the-task\n"
        busy = user.qimg("tunnel", "web", f"{local_port}:8000")
        assert_one_line_error(busy, 2, f"local port {local_port} is already in use")
    finally:
        tunnel.send_signal(signal.SIGINT)
        tunnel.wait(timeout=30)

    old_port = task.instances[0].port
    fake.restart_instance(task.uuid, 0)
    assert task.instances[0].port != old_port
    again = user.qimg("ssh", "web", "--", "echo", "back")
    assert again.returncode == 0 and again.stdout.strip() == "back", again.stderr
    config = (user.home.parent / "state" / "qimg" / "ssh" / "config").read_text()
    assert f"Port {task.instances[0].port}\n" in config and f"Port {old_port}\n" not in config
    assert user.qimg("stop", "--all").returncode == 0 and fake.tasks == {}


def test_a_changed_host_key_is_refused(
    pushed_image: str, fake: FakeQarnot, user: User, docker_client
) -> None:
    assert user.launch(pushed_image, "--name", "pinned").returncode == 0
    (task,) = fake.tasks.values()
    container = docker_client.containers.get(task.instances[0].container_id)
    # Someone else answers on the same address: a new host key, sshd reloaded.
    code, out = container.exec_run(
        ["sh", "-c", "rm /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' "
         "-f /etc/ssh/ssh_host_ed25519_key && kill -HUP 1"], user="root",
    )  # fmt: skip
    assert code == 0, out
    time.sleep(1)
    refused = user.qimg("ssh", "pinned", "--", "true")
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr or "IDENTIFICATION HAS CHANGED" in refused.stderr
    assert user.qimg("stop", "pinned").returncode == 0


@pytest.mark.parametrize(
    "faults",
    [
        Faults(status_burst=[429, 503, 502]),
        Faults(slow_seconds=0.3),
        Faults(drop_connections=2),
        Faults(forward_delay=4),
    ],
    ids=["429-5xx-burst", "slow-replies", "dropped-connections", "executing-without-forwards"],
)
def test_faults_still_end_in_a_login(pushed_image: str, fake: FakeQarnot, user: User, faults: Faults) -> None:
    fake.faults = faults
    result = user.launch(pushed_image, "--command", "whoami")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice"
    assert fake.tasks == {}


def test_a_failing_task_is_explained_and_deleted(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    fake.faults = Faults(failure=("NodeLost", "the node running instance 0 went away"))
    result = user.launch(pushed_image, "--command", "true")
    assert result.returncode == 1
    assert "task error: NodeLost: the node running instance 0 went away" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("qimg: error: task failure before ssh was ready")
    assert fake.tasks == {} and fake.count("DELETE", next(p for m, p in fake.requests if m == "DELETE")) == 1


def test_wrong_registry_password_fails_the_task_clearly(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    result = user.qimg(
        "run", pushed_image, *LOGIN, "--timeout", "60", "--command", "true", stdin="wrong-password\n"
    )
    # qimg asks the registry itself first (htpasswd: Basic auth), and names who was refused.
    assert_one_line_error(result, 2, f"refused team/alice to {REGISTRY_USER}")
    assert "wrong-password" not in result.stderr
    assert fake.count("POST", "/tasks") == 0


def test_deadline_aborts_and_deletes(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    fake.faults = Faults(forward_delay=600)
    result = user.qimg("run", pushed_image, *LOGIN, "--timeout", "3", stdin=REGISTRY_PASSWORD + "\n")
    assert result.returncode == 1
    assert (
        "not ready within 3 s of leaving the queue" in result.stderr
        and "stopped and deleted" in result.stderr
    )
    assert fake.tasks == {}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_during_the_wait_abort_and_delete(
    pushed_image: str, fake: FakeQarnot, user: User, signum: int
) -> None:
    fake.faults = Faults(forward_delay=600)
    # Registry credentials from the Docker config this time, as `docker login` leaves them.
    registry = pushed_image.split("/", 1)[0]
    token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    (user.home / ".docker").mkdir()
    (user.home / ".docker" / "config.json").write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    process = user.background("run", pushed_image)
    deadline = time.monotonic() + 60
    while not any(t.state == "FullyExecuting" for t in fake.tasks.values()):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    (task,) = fake.tasks.values()
    assert task.constants["DOCKER_REGISTRY_LOGIN"] == REGISTRY_USER
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert "stopped and deleted" in stderr and "Traceback" not in stderr
    assert fake.tasks == {}


def _fetch(url: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return str(reply.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_polls_keep_within_the_request_budget(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    """Qarnot is shared (and answers 429 when pressed): after the requests that check and create the
    task, every look at it waits until the launch's average is back within the budget, and the task
    the creation read back is the first look (it is not read again at once)."""
    fake.faults = Faults(forward_delay=3)  # the task executes for 3 s before its forward appears
    launched = user.launch(pushed_image, "--command", "true")
    assert launched.returncode == 0, launched.stderr
    (task_id,) = [path.split("/")[2] for method, path in fake.requests if method == "DELETE"]
    opened = fake.requests.index(("GET", "/settings"))
    reads = [index for index, request in enumerate(fake.requests) if request == ("GET", f"/tasks/{task_id}")]
    assert fake.requests[reads[0] - 1] == ("POST", "/tasks"), "the SDK reads the task back once"
    assert len(reads) >= 3, "the task is looked at until its forward appears"
    for earlier, index in itertools.pairwise(reads):
        since_opened = fake.request_times[index] - fake.request_times[opened]
        assert since_opened >= (index - opened) / REQUEST_BUDGET, f"look {index} came before its budget"
        assert fake.request_times[index] - fake.request_times[earlier] >= 0.2, "two looks in a row"
