"""`qimg run --local`: the same launcher on the local engine, no account needed."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

from qimg.launcher.backends.local import TASK_LABEL
from qimg.launcher.ssh import Endpoint, free_local_port, read_banner
from tests.e2e.conftest import User
from tests.helpers import assert_one_line_error, qimg_argv

pytestmark = pytest.mark.docker


def local_tasks(client: docker.DockerClient) -> list[str]:
    return [c.name or "" for c in client.containers.list(all=True, filters={"label": TASK_LABEL})]


def test_run_local_command(engine_client: docker.DockerClient, local_image: str, local_user: User) -> None:
    result = local_user.qimg("run", "--local", local_image, "--command", "id -un; pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["alice", "/home/alice"]
    assert "stopped and deleted" in result.stderr
    assert local_tasks(engine_client) == []


def test_a_local_run_never_imports_the_docker_sdk(local_image: str, local_user: User) -> None:
    """The launcher speaks the engine's API itself: the SDK (requests, urllib3, its models) would cost
    every local run 70 ms of imports. `-X importtime` names every module the run imports. Nor rich,
    on a stderr that is no terminal (a script's): its notes are plain lines there (20 ms)."""
    profiled = User(local_user.home, {**local_user.env, "PYTHONPROFILEIMPORTTIME": "1"})
    result = profiled.qimg("run", "--local", local_image, "--command", "true", "--max-time", "5m")
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "qimg.engine_api" in imported
    heavy = {"docker", "requests", "urllib3", "rich"}
    assert not {name for name in imported if name.split(".")[0] in heavy}
    assert "stopped and deleted" in result.stderr


def test_command_exit_code_is_qimgs(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    result = local_user.qimg("run", "--local", local_image, "--command", "exit 7")
    assert result.returncode == 7
    assert local_tasks(engine_client) == []


def test_ssh_config_install(engine_client: docker.DockerClient, local_image: str, local_user: User) -> None:
    launched = local_user.qimg("run", "--local", local_image, "--name", "loc", "--instances", "2")
    assert launched.returncode == 0, launched.stderr
    user_config = local_user.home / ".ssh" / "config"
    user_config.write_text("Host *\n    User nobody\n")  # a user's catch-all must not override qimg's entries
    assert local_user.qimg("ssh-config", "--install").returncode == 0
    assert local_user.qimg("ssh-config", "--install").stdout.startswith("already there")
    text = user_config.read_text()
    assert text.index("Include ") < text.index("Host *") and text.count("Include ") == 1
    for host in ("qimg-loc", "qimg-loc-1"):
        who = subprocess.run(
            ["ssh", "-F", str(user_config), host, "id", "-un"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert who.stdout.strip() == "alice", who.stderr
    listed = local_user.qimg("ls", "--local")
    assert "loc" in listed.stdout and "FullyExecuting" in listed.stdout
    assert local_user.qimg("stop", "--all", "--local").returncode == 0
    assert local_tasks(engine_client) == []
    assert "qimg-loc" not in (Path(local_user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config").read_text()


def test_an_image_qimg_did_not_build_logs_in_as_root(
    engine_client: docker.DockerClient, local_image: str, local_user: User, tmp_path: Path
) -> None:
    """The generic DOCKER_CMD: root's key from DOCKER_SSH, a fresh host key, sshd, with no quoting."""
    root_image = "qimgtest/e2e-root:latest"
    assert local_user.qimg("build", "--tag", root_image).returncode == 0
    (tmp_path / "Dockerfile").write_text(
        f'FROM {root_image}\nLABEL io.qimg.user="" io.qimg.start=""\nCMD ["sleep", "1"]\n'
    )
    engine_client.images.build(path=str(tmp_path), tag="qimgtest/foreign:latest", rm=True)
    refused = local_user.qimg("run", "--local", "qimgtest/foreign:latest", "--user", "alice")
    assert_one_line_error(refused, 2, "not built by qimg")
    result = local_user.qimg("run", "--local", "qimgtest/foreign:latest", "--command", "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "root"
    assert local_tasks(engine_client) == []


def test_connect_opens_a_terminal_session_then_stops(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    """--connect on a real pseudo-terminal (util-linux `script`), typing into the remote shell."""
    command = shlex.join(qimg_argv("run", "--local", local_image, "--connect"))
    session = subprocess.run(
        ["script", "-qec", command, "/dev/null"], input="echo remote-$((6*7)) as $(id -un)\nexit\n",
        capture_output=True, text=True, env={**os.environ, **local_user.env}, timeout=120, check=False,
        cwd=local_user.workdir,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout + session.stderr
    assert "remote-42 as alice" in session.stdout
    assert "stopped and deleted" in session.stdout  # script merges the terminal's streams
    assert local_tasks(engine_client) == []


def test_logs_follow_until_the_task_stops(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    assert local_user.qimg("run", "--local", local_image, "--name", "follow").returncode == 0
    follower = local_user.background("logs", "follow", "-f")
    time.sleep(2)
    assert local_user.qimg("ssh", "follow", "--", "true").returncode == 0
    time.sleep(2)
    assert local_user.qimg("stop", "follow").returncode == 0
    stdout, stderr = follower.communicate(timeout=30)  # ends by itself once the task is gone
    assert follower.returncode == 0
    assert "qimg-host-key: ssh-ed25519 " in stdout
    assert stderr.count("Accepted publickey for alice") >= 2  # readiness, then the ssh made while following


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_command_still_stops_the_task(
    engine_client: docker.DockerClient, local_image: str, local_user: User, signum: int
) -> None:
    process = local_user.background("run", "--local", local_image, "--command", "sleep 300")
    assert process.stderr is not None
    assert process.stderr.readline().startswith("ready: task ")  # the command runs from here on
    time.sleep(1)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert "stopped and deleted" in stderr and "Traceback" not in stderr
    assert local_tasks(engine_client) == []


def test_sigterm_to_a_tunnel_ends_its_ssh(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    """[17] `qimg tunnel` stopped by SIGTERM takes its ssh with it: nothing forwards the port any more."""
    assert local_user.qimg("run", "--local", local_image, "--name", "tun").returncode == 0
    port = free_local_port()
    tunnel = local_user.background("tunnel", "tun", f"{port}:22", "--local")
    deadline = time.monotonic() + 60
    while not read_banner(Endpoint("127.0.0.1", port)).startswith("SSH-"):
        assert time.monotonic() < deadline and tunnel.poll() is None, tunnel.communicate()
        time.sleep(0.2)
    tunnel.send_signal(signal.SIGTERM)
    _, stderr = tunnel.communicate(timeout=30)
    assert tunnel.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert read_banner(Endpoint("127.0.0.1", port)) == ""
    assert local_user.qimg("stop", "tun", "--local").returncode == 0
    assert local_tasks(engine_client) == []


def test_a_hostile_label_never_reaches_the_ssh_config(
    engine_client: docker.DockerClient, local_image: str, local_user: User, tmp_path: Path
) -> None:
    """[13] Anyone can publish an image with qimg's labels: a user label carrying ssh options is refused
    before anything starts, and nothing of it is written to qimg's ssh config."""
    (tmp_path / "Dockerfile").write_text(f"FROM {local_image}\n")
    hostile = "alice\n    PermitLocalCommand yes\n    LocalCommand touch /tmp/qimg-pwned"
    engine_client.images.build(
        path=str(tmp_path), tag="qimgtest/hostile:latest", labels={"io.qimg.user": hostile}, rm=True
    )
    result = local_user.qimg("run", "--local", "qimgtest/hostile:latest", "--command", "true")
    assert_one_line_error(result, 2, "its label io.qimg.user=", "not built by qimg as it is")
    assert local_tasks(engine_client) == []
    config = Path(local_user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config"
    assert not config.exists() or "LocalCommand" not in config.read_text()
