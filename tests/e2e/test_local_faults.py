"""Local launches met by what the engine and other processes do to them (issue 15, section 3: the
findings of ../shared/adversarial-3.md on the local engine), with the real engine and real ssh."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from qimg.builder.labels import START_COMMAND
from qimg.launcher.backends.local import INSTANCE_LABEL, NAME_LABEL, TASK_LABEL
from qimg.launcher.ssh import Endpoint, free_local_port, read_banner
from tests.e2e.conftest import User
from tests.e2e.processes import no_ssh_left, ssh_processes, wait_for_banner

pytestmark = pytest.mark.docker


def local_tasks(client: docker.DockerClient, name: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": [TASK_LABEL, f"{NAME_LABEL}={name}"]})
    return [container.name or "" for container in found]


def test_f4_a_launch_that_loses_an_instance_fails(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    """[F4] An instance's container removed while the launch starts the others (as `stop --all --local`
    racing it does): the run is not ready on the three that are left, it fails and leaves nothing."""
    run = local_user.background(
        "run", "--local", local_image, "--name", "lost4", "--instances", "4", "--command", "true"
    )
    first: dict[str, str | list[str] | bool] = {"label": [f"{NAME_LABEL}=lost4", f"{INSTANCE_LABEL}=0"]}
    deadline = time.monotonic() + 60
    while not (found := engine_client.containers.list(all=True, filters=first)):
        assert time.monotonic() < deadline and run.poll() is None, run.communicate()
        time.sleep(0.02)
    found[0].remove(force=True)
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 1, stderr
    assert "instance 0 is gone" in stderr and "Traceback" not in stderr
    assert local_tasks(engine_client, "lost4") == []


def test_f15_a_container_that_exits_at_once_says_so(
    engine_client: docker.DockerClient, local_image: str, local_user: User, tmp_path: Path
) -> None:
    """[F15] The image's start command exits 3 at once: the run says which instance exited with which
    code, and what it printed last, not that the engine did not publish port 22."""
    start = "#!/bin/sh\\necho starting the service\\necho no licence server found >&2\\nexit 3\\n"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {local_image}\nUSER root\n"
        f"RUN printf '{start}' > {START_COMMAND} && chmod 755 {START_COMMAND}\n"
    )
    tag = f"qimgtest/exits-at-once:{os.getpid()}"
    engine_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    try:
        result = local_user.qimg("run", "--local", tag, "--name", "exits3", "--command", "true")
    finally:
        engine_client.images.remove(tag)
    assert result.returncode == 1, result.stderr
    assert "instance 0 exited with code 3" in result.stderr, result.stderr
    assert "no licence server found" in result.stderr and "starting the service" in result.stderr
    assert "published" not in result.stderr and "Traceback" not in result.stderr
    assert local_tasks(engine_client, "exits3") == []


def _image_with_start_prefix(
    engine_client: docker.DockerClient, base: str, folder: Path, name: str, prefix: str
) -> str:
    """`base` whose start command first runs the shell lines `prefix`, then the real qimg-start."""
    (folder / "start").write_text(f'#!/bin/sh\n{prefix}\nexec {START_COMMAND}.real "$@"\n')
    (folder / "Dockerfile").write_text(
        f"FROM {base}\nUSER root\nRUN mv {START_COMMAND} {START_COMMAND}.real\n"
        f"COPY start {START_COMMAND}\nRUN chmod 755 {START_COMMAND}\n"
    )
    tag = f"qimgtest/{name}:{os.getpid()}"
    engine_client.images.build(path=str(folder), tag=tag, rm=True)
    return tag


def test_f7_a_container_that_prints_much_costs_a_bounded_read_and_pin(
    engine_client: docker.DockerClient, local_image: str, local_user: User, tmp_path: Path
) -> None:
    """[F7] 150 MB of output, then 20 000 well-formed bogus host keys, before sshd starts: qimg reads
    the end of the output only (its peak memory stays far below the output's size) and pins one key."""
    spew = (
        "head -c 150000000 /dev/zero | tr '\\0' x | fold -w 999\n"
        "seq 20000 | sed 's/.*/qimg-host-key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI&/'"
    )
    tag = _image_with_start_prefix(engine_client, local_image, tmp_path, "spew", spew)
    try:
        run = local_user.background("run", "--local", tag, "--name", "spew", "--command", "sleep 4")
        assert run.stderr is not None
        first = run.stderr.readline()
        assert first.startswith("ready: task "), first + run.communicate()[1]
        peak_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{run.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
        known_hosts = Path(local_user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "known_hosts"
        pinned = known_hosts.read_text().splitlines()
        _, stderr = run.communicate(timeout=120)
    finally:
        engine_client.images.remove(tag)
    assert run.returncode == 0, stderr
    assert peak_kb < 150_000, f"peak memory {peak_kb} kB for 150 MB of output"
    assert len(pinned) == 1 and " ssh-ed25519 " in pinned[0], pinned[:3]
    assert local_tasks(engine_client, "spew") == []


SECRET_VALUE = "s3cr3t-F10-value"


def test_f10_no_process_of_the_task_keeps_a_secret_in_its_environment(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    """[F10] With a deadline watcher and an idle watcher running (both live as long as the task), the
    value of a `--secret` is in no process's environment: every /proc/*/environ is read as root, by a
    process started with an empty environment (a `docker exec` gets the container's)."""
    secretive = User(local_user.home, {**local_user.env, "S1": SECRET_VALUE})
    launched = secretive.qimg(
        "run", "--local", local_image, "--name", "secret", "--secret", "S1",
        "--max-time", "10m", "--idle-stop", "5m",
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    try:
        (container,) = engine_client.containers.list(filters={"label": f"{NAME_LABEL}=secret"})
        every_environ = 'for f in /proc/[0-9]*/environ; do echo "== $f"; tr "\\0" "\\n" <"$f"; done'
        code, output = container.exec_run(["env", "-i", "sh", "-c", every_environ], user="root")
        assert isinstance(output, bytes)
        environments = output.decode("utf-8", "replace")
        _, listed = container.exec_run(["ps", "-eo", "pid,user,args"])
        processes = listed.decode() if isinstance(listed, bytes) else ""
    finally:
        assert local_user.qimg("stop", "secret", "--local").returncode == 0
    assert code == 0 and environments.count("== ") >= 4, (environments, processes)
    assert "QIMG_DEADLINE" in environments or "QIMG_MAX_SECONDS" in environments  # the watchers' own
    assert SECRET_VALUE not in environments and "QARNOT_SECRET__S1" not in environments, processes
    assert local_tasks(engine_client, "secret") == []


def test_f18_kill_9_of_a_tunnel_takes_its_ssh_along(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    """[F18] `qimg tunnel` killed with SIGKILL (no clean-up runs): its ssh gets SIGTERM from the kernel
    and the local port stops answering, instead of an orphan forwarding it."""
    assert local_user.qimg("run", "--local", local_image, "--name", "tun9").returncode == 0
    try:
        port = free_local_port()
        tunnel = local_user.background("tunnel", "tun9", f"{port}:22", "--local")
        wait_for_banner(port)
        tunnel.kill()
        tunnel.wait(timeout=30)
        _gone(lambda: read_banner(Endpoint("127.0.0.1", port)) == "", f"127.0.0.1:{port} still forwarded")
        no_ssh_left(local_user.env["XDG_STATE_HOME"])
    finally:
        assert local_user.qimg("stop", "tun9", "--local").returncode == 0
    assert local_tasks(engine_client, "tun9") == []


def test_kill_9_during_the_command_takes_its_ssh_session_along(
    engine_client: docker.DockerClient, local_image: str, local_user: User
) -> None:
    """`run --command` killed with SIGKILL: the ssh running the command ends with it (the task and its
    record stay, as after any kill -9: `stop` clears them)."""
    run = local_user.background("run", "--local", local_image, "--name", "cmd9", "--command", "sleep 300")
    try:
        assert run.stderr is not None
        assert run.stderr.readline().startswith("ready: task ")
        marker = local_user.env["XDG_STATE_HOME"]
        _gone(
            lambda: any("sleep 300" in line for line in ssh_processes(marker)), "the command's ssh never ran"
        )
        run.kill()
        run.wait(timeout=30)  # not communicate(): an orphaned ssh would hold the pipes open
        _gone(lambda: not any("sleep 300" in line for line in ssh_processes(marker)), "ssh session left")
    finally:
        assert local_user.qimg("stop", "cmd9", "--local").returncode == 0
    assert local_tasks(engine_client, "cmd9") == []


def _gone(condition: Callable[[], bool], message: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)
