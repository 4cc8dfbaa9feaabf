"""A devcontainer's postAttachCommand: run in the task each time qimg attaches a session (`qimg ssh NAME`
without a command, run's own session), as the login user, after the post-start commands, its output in
`qimg logs`; a command run through ssh is no attach."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.e2e.conftest import User
from tests.e2e.processes import named_tasks, no_ssh_left, ssh_processes, task_container
from tests.engines import LocalEngine
from tests.helpers import qimg_argv, run_qimg, stand_in

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
def attach_image(tmp_path_factory: pytest.TempPathFactory, local_engine: LocalEngine) -> Iterator[str]:
    """The image, built on the engine under test."""
    project = tmp_path_factory.mktemp("attach-project")
    (project / ".devcontainer.json").write_text(json.dumps(DEVCONTAINER))
    state = {"XDG_STATE_HOME": str(tmp_path_factory.mktemp("attach-state"))}
    built = run_qimg(
        "build", "--devcontainer", str(project / ".devcontainer.json"), "--tag", TAG,
        env={**state, **local_engine.env},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    client = local_engine.client()
    try:
        assert client.images.get(TAG).labels["io.qimg.lifecycle"] == "postStartCommand,postAttachCommand"
        yield TAG
    finally:
        client.close()


def test_each_session_qimg_attaches_runs_the_hook_after_the_start_commands(
    attach_image: str, local_user: User, engine_client: docker.DockerClient, tmp_path: Path
) -> None:
    kept = local_user.qimg("run", "--local", attach_image, "--name", "att")
    assert kept.returncode == 0, kept.stderr
    try:
        first = local_user.qimg("ssh", "att", "--local", stdin="exit\n")  # a session: the user's shell
        assert first.returncode == 0, first.stderr
        assert attached(local_user, "att", 1) == [ATTACH_LINE]  # after the slow postStartCommand
        # VS Code opened by qimg code attaches too (a `code` of the test's, which only says it ran).
        code = stand_in(tmp_path / "bin", "code", "exit 0\n")
        opened = run_qimg("code", "att", "--local", env={**local_user.env, **code})
        assert opened.returncode == 0, opened.stderr
        lines = attached(local_user, "att", 2)  # each `ssh -- CMD` of the wait is no attach: two, not more
        assert lines == [ATTACH_LINE] * 2
        for _ in range(300):  # the runner says "done" once the hook's commands have ended
            logs = local_user.qimg("logs", "att", "--local").stdout
            if logs.count("qimg-lifecycle: postAttachCommand: done") == 2:
                break
            time.sleep(0.2)
        assert logs.count("qimg-lifecycle: postAttachCommand (log): running as dev") == 2, logs
        assert logs.count("qimg-lifecycle: postAttachCommand: done") == 2, logs
    finally:
        assert local_user.qimg("stop", "att", "--local").returncode == 0
    assert named_tasks(engine_client, "att") == []


def test_the_attach_file_is_the_login_users_alone(
    attach_image: str, local_user: User, engine_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Only the login user (and root) may ask for an attach: the file is theirs, mode 0600, in a folder
    of root's."""
    kept = local_user.qimg("run", "--local", attach_image, "--name", "attf")
    assert kept.returncode == 0, kept.stderr
    try:
        shown = local_user.qimg(
            "ssh", "attf", "--local", "--", "stat -c '%U %a' /run/qimg/attached /run/qimg"
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines() == ["dev 600", "root 755"]
    finally:
        assert local_user.qimg("stop", "attf", "--local").returncode == 0
    assert named_tasks(engine_client, "attf") == []


# The image's qimg-lifecycle gone wrong, as in an image qimg did not make whole: `Fault`'s steps on top of
# the image; where the task's runner must stay the real one, a stand-in answers the attach request alone.
LIFECYCLE = "/usr/local/sbin/qimg-lifecycle"
STAND_IN = f"""#!/bin/sh
if [ "${{1:-}}" = attached ]; then ATTACHED; fi
exec {LIFECYCLE}.real "$@"
"""
REPLACED = f"RUN mv {LIFECYCLE} {LIFECYCLE}.real\nCOPY stand-in {LIFECYCLE}"


@dataclass(frozen=True)
class Fault:
    steps: str  # Dockerfile steps
    attached: str = ""  # what the stand-in does for an attach request (REPLACED)
    said: str = ""  # in the warning


FAULTS = {
    "missing": Fault(
        f"RUN rm {LIFECYCLE}",
        said=f"the task has no {LIFECYCLE}, though the image's labels say it has the hook",
    ),
    "failing": Fault(
        REPLACED,
        r'printf "some noise\nno attach here \033[31m(red)\n" >&2; exit 3',
        said=r"no attach here \x1b[31m(red)",  # its last line, escaped
    ),
    "hanging": Fault(REPLACED, ": >/tmp/attach-asked; exec sleep 600"),  # the request in flight until ended
    "unfollowed": Fault(  # the runner has no hook to follow the requests for
        "RUN rm -r /etc/qimg/lifecycle/02-postAttachCommand",
        said="qimg-lifecycle: no /run/qimg/attached: this task runs no postAttachCommand",
    ),
}


def faulty_image(client: docker.DockerClient, image: str, folder: Path, name: str) -> str:
    """`image` with the fault `name` (of FAULTS), built on the engine of `client`."""
    tag, fault = f"qimgtest/devcontainer-attach-{name}:latest", FAULTS[name]
    folder.mkdir()
    if fault.attached:
        (folder / "stand-in").write_text(STAND_IN.replace("ATTACHED", fault.attached))
        (folder / "stand-in").chmod(0o755)
    (folder / "Dockerfile").write_text(f"FROM {image}\n{fault.steps}\n")
    client.images.build(path=str(folder), tag=tag, rm=True)
    return tag


@pytest.mark.parametrize("fault", sorted(set(FAULTS) - {"hanging"}))
def test_an_attach_qimg_cannot_ask_for_is_one_warning_and_the_session_goes_on(
    attach_image: str, local_user: User, engine_client: docker.DockerClient, tmp_path: Path, fault: str
) -> None:
    """The image's labels say it has a postAttachCommand, but its qimg-lifecycle is missing, fails, or
    has no runner to follow the request: one warning line (what the task said, escaped), and the session
    (qimg ssh, run --connect, VS Code opened by qimg code) is the user's as ever."""
    image = faulty_image(engine_client, attach_image, tmp_path / "image", fault)
    session_input = "echo session went on as $(id -un)\nexit\n"
    kept = local_user.qimg("run", "--local", image, "--name", "attw")
    assert kept.returncode == 0, kept.stderr
    try:
        session = local_user.qimg("ssh", "attw", "--local", stdin=session_input)
        assert session.returncode == 0, session.stderr
        assert "session went on as dev" in session.stdout
        said = [line for line in session.stderr.splitlines() if line.startswith("qimg")]  # not ssh's
        assert len(said) == 1, session.stderr
        assert said[0].startswith("qimg: warning: the image's postAttachCommand was not started: "), said
        assert FAULTS[fault].said in said[0] and "\x1b" not in session.stderr
        # VS Code opened by qimg code: the same warning, and VS Code opens (a `code` that says it ran).
        code = stand_in(tmp_path / "bin", "code", f"echo opened >{tmp_path}/opened\n")
        opened = run_qimg("code", "attw", "--local", env={**local_user.env, **code})
        assert opened.returncode == 0, opened.stderr
        warned = [line for line in opened.stderr.splitlines() if "postAttachCommand" in line]
        assert len(warned) == 1 and FAULTS[fault].said in warned[0], opened.stderr
        assert (tmp_path / "opened").read_text() == "opened\n"
    finally:
        assert local_user.qimg("stop", "attw", "--local").returncode == 0
    # run's own session: the warning is one of its notes, the session follows, the task is stopped.
    connected = local_user.qimg("run", "--local", image, "--name", "attc", "--connect", stdin=session_input)
    assert connected.returncode == 0, connected.stderr
    assert "session went on as dev" in connected.stdout
    warned = [line for line in connected.stderr.splitlines() if "postAttachCommand" in line]
    assert len(warned) == 1 and FAULTS[fault].said in warned[0], connected.stderr
    assert "Traceback" not in connected.stderr and "\x1b" not in connected.stderr
    assert named_tasks(engine_client, "attw", "attc") == []
    engine_client.images.remove(image)


def on_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """`argv` on a new terminal (a pty) that is its controlling terminal, in a session of its own whose
    process group is the terminal's foreground one (util-linux `setsid --ctty`, which execs in place), as
    a shell starts a command: Ctrl-C typed there is SIGINT to that group. The process, the terminal's
    master and its own end (kept open to read its settings afterwards)."""
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        ["setsid", "--ctty", *argv], stdin=terminal, stdout=terminal, stderr=terminal,
        env={**os.environ, **env}, cwd=cwd,
    )  # fmt: skip
    return process, master, terminal


def read_until_exit(process: subprocess.Popen[bytes], master: int, timeout: float = 60) -> str:
    """All the terminal showed until the process exited."""
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 65536)
        elif process.poll() is not None:
            return shown.decode("utf-8", "replace")
    raise AssertionError(f"still running after {timeout} s: {shown!r}")


SESSIONS = {  # how a session attaches, and whether its task outlives qimg
    "run": (("run", "--local", "IMAGE", "--name", "attint", "--connect"), False),
    "run-kept": (("run", "--local", "IMAGE", "--name", "attint", "--connect", "--keep"), True),
    "ssh": (("ssh", "attint", "--local"), True),  # a task started before: not qimg ssh's to stop
}


@pytest.mark.parametrize("how", sorted(SESSIONS))
def test_ctrl_c_while_the_attach_request_is_in_flight(
    attach_image: str, local_user: User, engine_client: docker.DockerClient, tmp_path: Path, how: str
) -> None:
    """Ctrl-C typed while qimg waits for the task to take the attach request: qimg says it was
    interrupted in one line, without a traceback; no ssh of it is left; the task is stopped unless it
    is kept (`--keep`, or a task `qimg ssh` found); the terminal has the settings it had, its cursor
    shown."""
    image = faulty_image(engine_client, attach_image, tmp_path / "image", "hanging")
    state = local_user.env["XDG_STATE_HOME"]
    words, kept = SESSIONS[how]
    if how == "ssh":
        started = local_user.qimg("run", "--local", image, "--name", "attint")  # no session: no attach
        assert started.returncode == 0, started.stderr
    argv = qimg_argv(*(image if word == "IMAGE" else word for word in words))
    process, master, terminal = on_terminal(argv, local_user.env, local_user.workdir)
    try:
        before = termios.tcgetattr(terminal)
        deadline = time.monotonic() + 120
        while not any("qimg-lifecycle attached" in line for line in ssh_processes(state)):
            assert process.poll() is None and time.monotonic() < deadline, "no attach request was made"
            time.sleep(0.1)
        container = task_container(engine_client, "attint")
        while container.exec_run(["test", "-e", "/tmp/attach-asked"]).exit_code != 0:
            assert time.monotonic() < deadline, "the task never took the attach request"
            time.sleep(0.1)
        os.write(master, b"\x03")  # Ctrl-C
        shown = read_until_exit(process, master)
        assert process.returncode == 130, shown
        assert termios.tcgetattr(terminal) == before
        assert "Traceback" not in shown
        last = shown.rstrip().splitlines()[-1].removeprefix("^C")  # the terminal echoes Ctrl-C
        assert last == "qimg: interrupted by SIGINT", shown
        assert shown.rfind("\x1b[?25l") <= shown.rfind("\x1b[?25h")  # a cursor hidden is shown again
        no_ssh_left(state)
        if kept:
            assert named_tasks(engine_client, "attint") != []
            assert ("kept (--keep)" in shown) == (how == "run-kept")
        else:
            assert "stopped and deleted" in shown
            assert named_tasks(engine_client, "attint") == []
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
        os.close(terminal)
        local_user.qimg("stop", "attint", "--local")  # what the test kept, or left failing
    assert named_tasks(engine_client, "attint") == []
    engine_client.images.remove(image)
