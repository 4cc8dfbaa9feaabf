"""What Qarnot's replies hold reaches the terminal escaped, and records do not outlive their tasks."""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from qimg.launcher.backends.base import TASK_TAG
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot, FakeTask
from tests.helpers import assert_one_line_error

# An OSC 52 clipboard write, text hidden by SGR 8, and a right-to-left override.
HOSTILE_NAME = "e\x1b]52;c;SGk=\x1b\\\x1b[8mhidden\x1b[0m\u202ex"


def add_ended_task(fake: FakeQarnot, name: str) -> FakeTask:
    """A qimg task of the account that is over (nothing runs): as the API lists it."""
    task = FakeTask(
        str(uuid.uuid4()), name, "docker-network-ssh", 1, {}, [TASK_TAG], datetime.now(timezone.utc),
        state="Success",
    )  # fmt: skip
    with fake.lock:
        fake.tasks[task.uuid] = task
    return task


def test_control_characters_in_task_names_are_escaped(fake: FakeQarnot, user: User) -> None:
    """(F9) A task renamed with terminal escapes: `ls` and `stop --all` show them as text."""
    add_ended_task(fake, HOSTILE_NAME)
    wide = User(user.home, {**user.env, "COLUMNS": "250"})
    listed = wide.qimg("ls")
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "\u202e" not in listed.stdout
    assert "e\\x1b]52;c;SGk=\\x1b\\\\x1b[8mhidden\\x1b[0m\\u202ex" in listed.stdout
    stopped = wide.qimg("stop", "--all")
    assert stopped.returncode == 0, stopped.stderr
    assert "\x1b" not in stopped.stdout + stopped.stderr
    assert stopped.stdout.startswith("stopped e\\x1b]52;c;SGk=")


def write_record(user: User, name: str, backend: str, task_id: str) -> Path:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    record = TaskRecord(
        name, backend, task_id, "alice", user.home / ".ssh" / "id_ed25519", None,
        [InstanceRecord(0, Endpoint("127.0.0.1", 40022), [key])], launch_id=f"launch-{name}",
    )  # fmt: skip
    path = Path(user.env["XDG_STATE_HOME"]) / "qimg" / "tasks" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.as_dict()))
    return path


def test_stop_all_drops_the_records_of_tasks_gone(fake: FakeQarnot, user: User) -> None:
    """(F12) Records left by a launch or a stop cut short: `stop --all` said "no qimg task" and kept
    them, and their Host entries, for ever. Now it drops those of its backend whose task is gone."""
    ended = add_ended_task(fake, "ended1")
    write_record(user, "gone1", "qarnot", str(uuid.uuid4()))  # deleted long ago: the API does not know it
    write_record(user, "ended1", "qarnot", ended.uuid)
    local = write_record(user, "onlocal", "local", "0123abcd")  # another backend: not this command's
    assert user.qimg("ssh-config").returncode == 0
    config = Path(user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config"
    assert "Host qimg-gone1\n" in config.read_text()
    stopped = user.qimg("stop", "--all")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"stopped ended1 ({ended.uuid})\n"
    assert stopped.stderr == "qimg: warning: dropped the record of task gone1: its task no longer runs\n"
    assert sorted(path.name for path in local.parent.glob("*.json")) == ["onlocal.json"]
    assert "qimg-gone1" not in config.read_text() and "qimg-ended1" not in config.read_text()
    assert "Host qimg-onlocal\n" in config.read_text()


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        *((("stop", "--all"), sig) for sig in (signal.SIGINT, signal.SIGTERM)),
        *((("ls",), sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)),
    ],
)
def test_a_command_interrupted_says_so(
    fake: FakeQarnot, user: User, command: tuple[str, ...], sig: signal.Signals
) -> None:
    """(F12) SIGINT during `stop --all` printed nothing; SIGTERM killed it (no handler). A command that
    holds no task (`ls`): Ctrl-C ended it with 130 and nothing printed (typer's silent Exit), SIGTERM
    and SIGHUP killed it. Each is one line and 128 + the signal, as for `run`."""
    fake.faults.hang_next = 1  # its first request gets no answer: qimg waits there
    waiting = user.background(*command)
    deadline = time.monotonic() + 60
    while fake.faults.hang_next and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.faults.hang_next == 0, "qimg never asked"
    waiting.send_signal(sig)
    _out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 128 + sig, (waiting.returncode, err)
    assert err == f"qimg: interrupted by {sig.name}\n"


def test_a_login_to_a_task_gone_drops_its_record(fake: FakeQarnot, user: User) -> None:
    """(F12) A record whose task was deleted elsewhere: `qimg ssh` said so every time and kept it."""
    path = write_record(user, "gone2", "qarnot", str(uuid.uuid4()))
    result = user.qimg("ssh", "gone2", "--", "true")
    assert_one_line_error(result, 1, "task gone2 no longer exists on qarnot: its record is dropped")
    assert not path.exists()
    config = Path(user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config"
    assert "qimg-gone2" not in config.read_text()


def test_stop_all_interrupted_between_tasks_drops_the_records_of_those_stopped(
    fake: FakeQarnot, user: User
) -> None:
    """(F12) After an interrupted `stop --all`, deleted tasks kept their records and Host entries. Now the
    deletion under way ends, the records of the tasks stopped go, and the others stay."""
    names = [f"slow{index}" for index in range(4)]
    tasks = {name: add_ended_task(fake, name) for name in names}
    paths = {name: write_record(user, name, "qarnot", task.uuid) for name, task in tasks.items()}
    fake.faults.slow_seconds = 0.7  # every reply: the signal comes while the stops go on
    stopping = user.background("stop", "--all")
    deadline = time.monotonic() + 60
    while not fake.deleted and time.monotonic() < deadline:
        time.sleep(0.02)
    stopping.send_signal(signal.SIGTERM)
    _out, err = stopping.communicate(timeout=60)
    fake.faults.slow_seconds = 0
    assert stopping.returncode == 128 + signal.SIGTERM, err
    assert err.endswith("qimg: interrupted by SIGTERM\n") and "Traceback" not in err
    deleted = {name for name, task in tasks.items() if task.uuid in fake.deleted}
    assert deleted and deleted != set(names), deleted  # interrupted between tasks
    assert {name for name, path in paths.items() if not path.exists()} == deleted
    config = (Path(user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config").read_text()
    assert {name for name in names if f"Host qimg-{name}\n" not in config} == deleted
