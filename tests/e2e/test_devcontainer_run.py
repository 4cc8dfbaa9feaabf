"""A devcontainer image's labels at run time: its forwardPorts are `qimg run`'s default tunnels (on each
local engine, Docker, rootful and rootless Podman, and on the fake Qarnot API), `--tunnel` replaces them,
`ls` shows them with their portsAttributes labels, and `qimg code` opens its workspaceFolder and lists its
extensions with the Remote-SSH setting that installs them. Hostile labels and a taken port are refused
before any task."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from qimg.launcher.backends.local import NAME_LABEL, TASK_LABEL
from qimg.launcher.ssh import free_local_port
from qimg.launcher.tunnels import is_port_free
from tests.e2e.conftest import User
from tests.engines import LocalEngine, docker_host
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD, Registry
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker

TAG = "qimgtest/devcontainer-run:latest"
PORT = 8888
ANSWER = "devcontainer-port-ok"
# The project's server: on the task's loopback only, answering every connection with one line.
SERVER = (
    'perl -MIO::Socket::INET -e \'$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:8888", Listen => 5, '
    f'ReuseAddr => 1) or die; while ($c = $s->accept) {{ print $c "{ANSWER}\\n"; close $c }}\' '
    "> /dev/null 2>&1 &"
)
DEVCONTAINER = {
    "image": "debian:bookworm-slim",
    "remoteUser": "dev",
    "workspaceFolder": "/workspaces/proj",
    "forwardPorts": [PORT],
    "portsAttributes": {str(PORT): {"label": "Jupyter"}},
    "postStartCommand": SERVER,
    "customizations": {"vscode": {"extensions": ["ms-python.python", "ms-toolsai.jupyter"]}},
}
HOSTILE = "qimgtest/devcontainer-hostile:latest"
SETTING = '"remote.SSH.defaultExtensions": ['


def build_image(project: Path, state: Path, engine: LocalEngine) -> Iterator[str]:
    (project / ".devcontainer").mkdir()
    (project / ".devcontainer" / "devcontainer.json").write_text(json.dumps(DEVCONTAINER))
    built = run_qimg(
        "build", "--devcontainer", "--tag", TAG, env={"XDG_STATE_HOME": str(state), **engine.env}, cwd=project
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    yield TAG
    client = engine.client()
    client.images.remove(TAG)  # the tag only
    client.close()


@pytest.fixture(scope="module")
def devcontainer_image(tmp_path_factory: pytest.TempPathFactory, local_engine: LocalEngine) -> Iterator[str]:
    """The image, built on the engine under test."""
    yield from build_image(tmp_path_factory.mktemp("project"), tmp_path_factory.mktemp("state"), local_engine)


@pytest.fixture(scope="module")
def docker_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image, built on Docker (pushed from there for the fake Qarnot API)."""
    engine = LocalEngine("docker", docker_host())
    yield from build_image(tmp_path_factory.mktemp("project"), tmp_path_factory.mktemp("state"), engine)


def read_line(port: int) -> str:
    """The first line the local port answers with ("" when nothing listens or nothing comes)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            return connection.makefile().readline().strip()
    except OSError:
        return ""


def wait_answer(port: int, process: subprocess.Popen[str]) -> str:
    """The answer through the tunnel, once the server (started after sshd) and the tunnel are up."""
    deadline = time.monotonic() + 60
    while (answer := read_line(port)) != ANSWER:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate(timeout=30)
        time.sleep(0.3)
    return answer


def wait_ready(process: subprocess.Popen[str]) -> str:
    """run's ready line (its stdout), the task holding the tunnels from there until Ctrl-C."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready: task "), (line, process.communicate(timeout=30))
    return line


def interrupt(process: subprocess.Popen[str]) -> str:
    """Ctrl-C on the tunnels: they close, the task keeps running. run's stderr."""
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    return stderr


def tasks_named(client: docker.DockerClient, name: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": [TASK_LABEL, f"{NAME_LABEL}={name}"]})
    return [container.name or "" for container in found]


def test_forward_ports_are_run_defaults_shown_by_ls_and_opened_by_code(
    local_user: User, devcontainer_image: str, engine_client: docker.DockerClient
) -> None:
    if read_line(PORT) or not is_port_free(PORT):
        pytest.fail(f"port {PORT} is taken on this machine: the test needs it free")
    run = local_user.background("run", "--local", devcontainer_image, "--name", "dcfwd")
    try:
        wait_ready(run)
        assert wait_answer(PORT, run) == ANSWER  # forwarded from the same local port, no --tunnel given

        listed = json.loads(local_user.qimg("ls", "--local", "--json").stdout)
        (task,) = [task for task in listed["tasks"] if task["name"] == "dcfwd"]
        assert task["ports"] == [{"local": PORT, "remote": PORT, "label": "Jupyter"}]
        table = run_qimg("ls", "--local", env={**local_user.env, "COLUMNS": "200"}, cwd=local_user.workdir)
        (row,) = [line for line in table.stdout.splitlines() if "dcfwd" in line]
        assert f"{PORT} (Jupyter)" in row

        printed = local_user.qimg("code", "dcfwd", "--print")
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout == "vscode://vscode-remote/ssh-remote+qimg-dcfwd/workspaces/proj\n"
        assert "ms-python.python, ms-toolsai.jupyter" in printed.stderr
        assert SETTING in printed.stderr
        snippet = printed.stderr[printed.stderr.index(SETTING) :]
        assert json.loads("{" + snippet.strip() + "}") == {
            "remote.SSH.defaultExtensions": ["ms-python.python", "ms-toolsai.jupyter"]
        }
        home = local_user.qimg("code", "dcfwd", "notes", "--print")  # a PATH given: the home's, as before
        assert home.stdout == "vscode://vscode-remote/ssh-remote+qimg-dcfwd/home/dev/notes\n"

        stderr = interrupt(run)
        assert read_line(PORT) == ""  # the tunnel closed with Ctrl-C
        assert tasks_named(engine_client, "dcfwd"), stderr  # the task stays
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        assert local_user.qimg("stop", "dcfwd", "--local").returncode == 0


def test_an_explicit_tunnel_replaces_the_image_ports(
    local_user: User, devcontainer_image: str, engine_client: docker.DockerClient
) -> None:
    local = free_local_port()
    run = local_user.background(
        "run", "--local", devcontainer_image, "--name", "dcrep", "--tunnel", f"{local}:{PORT}"
    )
    try:
        wait_ready(run)
        assert wait_answer(local, run) == ANSWER
        assert read_line(PORT) == ""  # the image's own port is not forwarded
        listed = json.loads(local_user.qimg("ls", "--local", "--json").stdout)
        (task,) = [task for task in listed["tasks"] if task["name"] == "dcrep"]
        assert task["ports"] == [{"local": local, "remote": PORT, "label": "Jupyter"}]
        interrupt(run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        assert local_user.qimg("stop", "dcrep", "--local").returncode == 0

    # --no-tunnel: none at all, and the run returns once the task is ready
    bare = local_user.qimg("run", "--local", devcontainer_image, "--name", "dcnone", "--no-tunnel")
    try:
        assert bare.returncode == 0, bare.stderr
        listed = json.loads(local_user.qimg("ls", "--local", "--json").stdout)
        (task,) = [task for task in listed["tasks"] if task["name"] == "dcnone"]
        assert task["ports"] == []
    finally:
        assert local_user.qimg("stop", "dcnone", "--local").returncode == 0
    both = local_user.qimg(
        "run", "--local", devcontainer_image, "--name", "dcboth", "--no-tunnel", "--tunnel", "9"
    )
    assert_one_line_error(both, 2, "--no-tunnel", "--tunnel")
    assert tasks_named(engine_client, "dcboth") == []


def test_a_taken_local_port_is_refused_before_any_task(
    local_user: User, devcontainer_image: str, engine_client: docker.DockerClient
) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the connections in TIME_WAIT
        taken.bind(("127.0.0.1", PORT))
        taken.listen()
        refused = local_user.qimg("run", "--local", devcontainer_image, "--name", "dctaken")
    assert_one_line_error(refused, 2, f"local port {PORT}", "forwardPorts", f"--tunnel LOCAL:{PORT}")
    assert tasks_named(engine_client, "dctaken") == []


@pytest.mark.parametrize(
    ("label", "value"),
    [
        ("io.qimg.forward-ports", "22,abc"),
        ("io.qimg.forward-ports", "70000"),
        ("io.qimg.workspace-folder", "/workspaces/../etc"),
        ("io.qimg.workspace-folder", "/workspaces/a\tb"),
        ("io.qimg.port-labels", "8888=a;b"),
        ("io.qimg.vscode-extensions", "ms-python.python,--install-extension x"),
    ],
)
def test_a_hostile_devcontainer_label_is_refused_before_any_task(
    local_user: User,
    devcontainer_image: str,
    engine_client: docker.DockerClient,
    label: str,
    value: str,
) -> None:
    """Anyone can publish an image with qimg's labels (here given to a plain docker build on top of a
    good one): a value no qimg build writes is refused in one line, nothing started."""
    context = local_user.workdir / "hostile"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {devcontainer_image}\n")
    engine_client.images.build(path=str(context), tag=HOSTILE, labels={label: value}, rm=True)
    try:
        assert engine_client.images.get(HOSTILE).labels[label] == value
        result = local_user.qimg("run", "--local", HOSTILE, "--name", "dchostile")
        assert_one_line_error(result, 2, f"its label {label}=", "not built by qimg as it is")
        assert tasks_named(engine_client, "dchostile") == []
    finally:
        engine_client.images.remove(HOSTILE)


def test_forward_ports_on_qarnot(
    user: User, fake: FakeQarnot, auth_registry: Registry, docker_image: str
) -> None:
    target = user.push_to(docker_image, auth_registry, "team/devcontainer-run:e2e")
    if read_line(PORT) or not is_port_free(PORT):
        pytest.fail(f"port {PORT} is taken on this machine: the test needs it free")
    password = user.home / "registry-password"
    password.write_text(REGISTRY_PASSWORD + "\n")
    with password.open() as stdin:
        run = user.background("run", target, *LOGIN, "--timeout", "120", "--name", "dcq", stdin=stdin)
    try:
        wait_ready(run)
        assert wait_answer(PORT, run) == ANSWER
        listed = json.loads(user.qimg("ls", "--json").stdout)
        (task,) = [task for task in listed["tasks"] if task["name"] == "dcq"]
        assert task["ports"] == [{"local": PORT, "remote": PORT, "label": "Jupyter"}]
        printed = user.qimg("code", "dcq", "--print")
        assert printed.stdout == "vscode://vscode-remote/ssh-remote+qimg-dcq/workspaces/proj\n"
        interrupt(run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        assert user.qimg("stop", "dcq").returncode == 0
