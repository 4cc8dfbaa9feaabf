"""Connections that last, with the real OpenSSH client and `qimg run --local` tasks: masters reused and
closed, keepalives on both ends, and a tunnel that survives dropped links until its task is gone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest

from qimg.engine_api import Engine
from qimg.launcher import sshconfig
from qimg.launcher.ssh import Endpoint, free_local_port, host_keys_in, read_banner
from tests.e2e.conftest import User
from tests.e2e.processes import Lines, no_ssh_left, ssh_processes, task_container, wait_for_banner

pytestmark = pytest.mark.docker

# Drops every ssh connection of the container and keeps sshd listening: its per-connection processes go.
KILL_CONNECTIONS = (
    'for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = 1 ] && continue; '
    'grep -qx sshd "$d/comm" 2>/dev/null && kill "$p"; done; true'
)


def state(user: User) -> str:
    return user.env["XDG_STATE_HOME"]


def ssh_files(user: User) -> tuple[str, str]:
    ssh_dir = Path(state(user)) / "qimg" / "ssh"
    return (ssh_dir / "config").read_text(), (ssh_dir / "known_hosts").read_text()


def test_a_master_is_reused_never_blocks_and_is_closed(
    docker_client: docker.DockerClient, e2e_image: str, short_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert short_user.qimg("run", "--local", e2e_image, "--name", "cm").returncode == 0
    try:
        # qimg's output is a pipe here: the call returns while the master it started stays behind it.
        first = short_user.qimg("ssh", "cm", "--", "echo", "one")
        assert first.returncode == 0 and first.stdout == "one\n", first.stderr
        (master,) = ssh_processes(state(short_user))
        assert master.endswith("[mux]") and str(Path(state(short_user)) / "qimg" / "ssh" / "cm") in master
        second = short_user.qimg("ssh", "cm", "--", "echo", "two")
        assert second.stdout == "two\n"
        assert ssh_processes(state(short_user)) == [master]  # reused, not another
        for name, value in short_user.env.items():
            monkeypatch.setenv(name, value)
        sshconfig.forget("cm")  # as `qimg stop` and the end of `run --command` do: here the task still runs
        no_ssh_left(state(short_user))
        assert task_container(docker_client, "cm").status == "running"
        assert list((Path(state(short_user)) / "qimg" / "ssh" / "cm").iterdir()) == []
    finally:
        # found by the engine's listing: its record is gone
        stopped = short_user.qimg("stop", "cm", "--local")
    assert stopped.returncode == 0, stopped.stderr
    no_ssh_left(state(short_user))


def test_a_command_run_leaves_no_ssh_behind(e2e_image: str, short_user: User) -> None:
    result = short_user.qimg(
        "run", "--local", e2e_image, "--instances", "2", "--command", "echo $INSTANCE_ID"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["0", "1"]
    no_ssh_left(state(short_user))


def test_keepalives_on_both_ends(
    docker_client: docker.DockerClient, engine: Engine, e2e_image: str, short_user: User
) -> None:
    assert short_user.qimg("run", "--local", e2e_image, "--name", "alive").returncode == 0
    try:
        code, out = engine.exec_run(
            task_container(docker_client, "alive").id or "", ["sshd", "-T"], user="root"
        )
        assert code == 0, out
        settings = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        assert (settings["clientaliveinterval"], settings["clientalivecountmax"]) == ("30", "4")
        resolved = subprocess.run(
            ["ssh", "-G", "-F", str(Path(state(short_user)) / "qimg" / "ssh" / "config"), "qimg-alive"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "serveraliveinterval 15" in resolved and "controlpersist 60" in resolved
    finally:
        assert short_user.qimg("stop", "alive", "--local").returncode == 0


def test_a_tunnel_lasts_until_its_task_is_gone(
    docker_client: docker.DockerClient, engine: Engine, e2e_image: str, short_user: User
) -> None:
    """The link dropped (sshd's connections killed), then the container restarted (a new port, its key
    pinned again from its own output): the tunnel comes back each time; `qimg stop` ends it in one line."""
    assert short_user.qimg("run", "--local", e2e_image, "--name", "tun").returncode == 0
    port = free_local_port()
    tunnel = short_user.background("tunnel", "tun", f"{port}:22", "--local")
    assert tunnel.stderr is not None
    lines = Lines(tunnel.stderr)
    try:
        lines.wait_for(f"forwarding 127.0.0.1:{port} -> tun:22")
        wait_for_banner(port)
        container = task_container(docker_client, "tun")

        code, out = engine.exec_run(container.id or "", ["sh", "-c", KILL_CONNECTIONS], user="root")
        assert code == 0, out
        dropped = lines.wait_for("tunnel to tun up again")
        assert "tunnel to tun down (" in dropped[0] and "connecting again in 1 s" in dropped[0], dropped
        wait_for_banner(port)

        config_before, _ = ssh_files(short_user)
        container.restart(timeout=1)
        lines.wait_for("tunnel to tun up again")
        wait_for_banner(port)
        container.reload()
        new_port = int(container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        config, known_hosts = ssh_files(short_user)
        assert f"    Port {new_port}\n" in config and config != config_before
        printed = host_keys_in(container.logs(stdout=True, stderr=False).decode())
        assert printed and known_hosts == "".join(f"qimg-tun {key}\n" for key in printed)

        assert short_user.qimg("stop", "tun", "--local").returncode == 0
        assert tunnel.wait(timeout=60) == 1
        rest = lines.rest()
        errors = [line for line in rest if line.startswith("qimg: error:")]
        assert errors == ["qimg: error: tunnel to tun closed: the task is gone (stopped or deleted)\n"], rest
        assert "Traceback" not in "".join(rest)
        assert read_banner(Endpoint("127.0.0.1", port)) == ""
    finally:
        if tunnel.poll() is None:
            tunnel.kill()
            tunnel.wait()
        short_user.qimg("stop", "tun", "--local")  # already stopped, unless the test failed before
    no_ssh_left(state(short_user))


def test_a_command_that_starts_with_a_dash_is_run_not_read_as_options(e2e_image: str, user: User) -> None:
    """(F17) The remote `sh -lc -oProxyCommand=...` printed sh's option list (rc 2): the words are a
    command, which here does not exist (127). busybox's sh (Alpine's) reads `-c --` the same way."""
    assert user.qimg("run", "--local", e2e_image, "--name", "dash").returncode == 0
    try:
        words = user.qimg("ssh", "dash", "--local", "--", "-oProxyCommand=touch /tmp/pwned", "x")
        assert words.returncode == 127, (words.stdout, words.stderr)
        assert "-oProxyCommand=touch: not found" in words.stderr
        run = user.qimg("ssh", "dash", "--local", "--", "ls /tmp/pwned 2>&1 || echo none")
        assert run.stdout.endswith("none\n")
        busybox = user.qimg("ssh", "dash", "--local", "--", "busybox sh -lc -- 'echo via $0' busybox-sh")
        assert busybox.returncode == 0 and busybox.stdout == "via busybox-sh\n", busybox.stderr
    finally:
        stopped = user.qimg("stop", "dash", "--local")
    assert stopped.returncode == 0, stopped.stderr
