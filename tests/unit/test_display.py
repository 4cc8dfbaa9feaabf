"""Text from outside reaches the terminal with its control characters escaped (F9); the ready lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from qimg.display import shown
from qimg.display.tasks import ready
from qimg.launcher import sshconfig
from qimg.launcher.records import ForwardedPort, InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint

CASES = {
    "OSC 52 clipboard write": ("\x1b]52;c;SGk=\x07", "\\x1b]52;c;SGk=\\x07"),
    "hidden text": ("\x1b[8mhidden\x1b[0m", "\\x1b[8mhidden\\x1b[0m"),
    "C1 CSI": ("a\x9b31mb", "a\\x9b31mb"),
    "a second line": ("one\ntwo\r", "one\\ntwo\\r"),
    "right-to-left override": ("abc\u202edef", "abc\\u202edef"),
    "DEL and NUL": ("\x7f\x00", "\\x7f\\x00"),
    "plain text, tab and accents": ("café\tok ☃", "café\tok ☃"),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_shown(text: str, expected: str) -> None:
    assert shown(text) == expected


def test_the_ready_lines_and_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """How to log in, from the launcher's logins: display draws them and reads no ssh config itself."""
    monkeypatch.setenv("HOME", str(tmp_path))  # the state folder inside the home: shown as ~/...
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    instance = InstanceRecord(0, Endpoint("127.0.0.1", 2222), ["ssh-ed25519 AAAAkey"])
    record = TaskRecord("web", "local", "c0ffee", "alice", tmp_path / "id", instances=[instance])
    logins = sshconfig.logins(record, putty=False)
    ready(record, logins, as_json=False, out=sys.stdout)
    assert capsys.readouterr().out == (
        "ready: task web (c0ffee) on local, host keys pinned\n  ssh -F ~/state/qimg/ssh/config qimg-web\n"
    )
    ready(record, logins, as_json=True, out=sys.stdout)
    assert json.loads(capsys.readouterr().out) == {
        "task": {"id": "c0ffee", "name": "web"}, "backend": "local", "state": "FullyExecuting",
        "instances": [{
            "index": 0, "alias": "qimg-web", "host": "127.0.0.1", "port": 2222, "user": "alice",
            "ssh_command": "ssh -F ~/state/qimg/ssh/config qimg-web", "host_key": "ssh-ed25519 AAAAkey",
        }],
        "ports": [],
    }  # fmt: skip
    record.ports = [
        ForwardedPort(8888, 8888, "Jupyter"),
        ForwardedPort(18080, 8080),
    ]  # the tunnels run opened
    ready(record, logins, as_json=False, out=sys.stdout)
    assert capsys.readouterr().out.splitlines()[2:] == [
        "  port 8888 (Jupyter): 127.0.0.1:8888",
        "  port 18080:8080: 127.0.0.1:18080",
    ]
    ready(record, logins, as_json=True, out=sys.stdout)
    assert json.loads(capsys.readouterr().out)["ports"] == [
        {"local": 8888, "remote": 8888, "label": "Jupyter"},
        {"local": 18080, "remote": 8080, "label": None},
    ]
