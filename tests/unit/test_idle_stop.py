"""`run --idle-stop`: the option becomes QIMG_IDLE_STOP, and `ls` reads what the watchers printed."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from qimg.builder.spec import ImageRef
from qimg.launcher.backends.base import IdleStop, idle_stop_in
from qimg.launcher.contract import Start, task_constants
from qimg.launcher.keys.read import LoginKey
from qimg.launcher.keys.wire import PublicKey
from tests.helpers import assert_one_line_error, run_qimg

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
AT = datetime(2030, 1, 1, tzinfo=timezone.utc)
EPOCH = int(AT.timestamp())


def test_the_constant_is_whole_seconds_and_only_when_asked() -> None:
    key = LoginKey((PublicKey("ssh-ed25519", b"\0\0\0\x0bssh-ed25519" + b"\0" * 36, "me"),), Path("k"))
    ref = ImageRef.parse("reg.example.com/t/a:1", "IMAGE")
    start = Start("/usr/local/sbin/qimg-start")
    assert "QIMG_IDLE_STOP" not in task_constants(ref, key, start, 60, 2_000_000_000, None)
    assert task_constants(ref, key, start, 60, 2_000_000_000, None, 1800)["QIMG_IDLE_STOP"] == "1800"


@pytest.mark.parametrize("bad", ["0", "1.5h", "soon", "-3"])
def test_bad_durations_are_refused_before_anything_starts(bad: str) -> None:
    result = run_qimg("run", "--local", "qimg/alice", "--idle-stop", bad, env=NO_ENGINE)
    assert_one_line_error(result, 2, "invalid --idle-stop")


STOP, BUSY, BYE = (
    "qimg-idle: stop-at",
    "qimg-idle: in-use (an ssh session is open)",
    "qimg-idle: no ssh session",
)


def lines(*texts: str) -> str:
    return "".join(text + "\n" for text in texts)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("", None),
        (lines("0> qimg-start: sshd starting, login as alice"), None),  # no --idle-stop, or an older image
        (lines(f"0> {STOP} {EPOCH} (after 60 s without an ssh session)"), IdleStop(False, AT)),
        # the clock restarted after a session: the last line counts
        (lines(f"0> {STOP} 1", f"0> {BUSY}", f"0> {STOP} {EPOCH}"), IdleStop(False, AT)),
        (lines(f"0> {STOP} {EPOCH}", f"0> {BUSY}"), IdleStop(True, None)),
        # the task stops when its last instance does; a session on any instance holds that one
        (lines(f"0> {STOP} 5", f"1> {STOP} {EPOCH}"), IdleStop(False, AT)),
        (lines(f"0> {STOP} {EPOCH}", f"1> {BUSY}"), IdleStop(True, None)),
        # an instance that stopped says nothing more about the task...
        (
            lines(f"0> {STOP} {EPOCH}", f"1> {STOP} 7", f"1> {BYE} for 9 s: stopping sshd"),
            IdleStop(False, AT),
        ),
        (lines(f"0> {STOP} 7", f"0> {BYE} for 9 s: stopping sshd"), None),
        # ... until a restart of it prints again
        (lines(f"0> {BYE} for 9 s: stopping sshd", f"0> {STOP} {EPOCH}"), IdleStop(False, AT)),
        # what is not the watcher's line, or not a time, is not read as one
        (lines(f"0> echo {STOP} 99", f"0> {STOP} 99999999999999999999", f"0> {STOP} x"), None),
        (lines(f"{STOP} {EPOCH}"), IdleStop(False, AT)),  # one instance's own output: no prefix
    ],
)
def test_idle_stop_in_the_output(output: str, expected: IdleStop | None) -> None:
    assert idle_stop_in(output) == expected


def test_as_listed() -> None:
    counting, held = IdleStop(False, AT), IdleStop(True, None)
    assert counting.as_dict(datetime(2029, 12, 31, 23, 0, tzinfo=timezone.utc)) == {
        "session_open": False, "seconds_left": 3600, "stop_at": "2030-01-01T00:00:00+00:00",
    }  # fmt: skip
    assert counting.seconds_left(datetime(2030, 1, 2, tzinfo=timezone.utc)) == 0  # due: never negative
    assert held.as_dict(AT) == {"session_open": True, "seconds_left": None, "stop_at": None}
