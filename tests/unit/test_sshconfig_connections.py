"""Connections that last, as written in qimg's ssh config and read back by ssh itself (`ssh -G`):
keepalives, and one reusable master per instance whose socket path fits a Unix socket."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from qimg.launcher import sshconfig
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A state directory as short as a user's: pytest's own are too deep for a socket path."""
    path = Path(tempfile.mkdtemp(prefix="q", dir="/tmp"))
    yield path
    shutil.rmtree(path)


def record(port: int = 50001, task_id: str = "id-1") -> TaskRecord:
    return TaskRecord(
        "sim", "qarnot", task_id, "alice", Path("/keys/id_ed25519"), None,
        [InstanceRecord(0, Endpoint("gw.example.com", port), ["ssh-ed25519 AAAAKEY0"])],
    )  # fmt: skip


def resolved(host: str = "qimg-sim") -> dict[str, str]:
    """What ssh makes of qimg's config for `host`."""
    out = subprocess.run(
        ["ssh", "-G", "-F", str(sshconfig.config_path()), host], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_keepalives_and_a_reusable_master(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(short_tmp))
    sshconfig.save(record())
    options = resolved()
    assert options["serveraliveinterval"] == "15" and options["serveralivecountmax"] == "3"
    assert options["controlmaster"] == "auto" and options["controlpersist"] == "60"
    socket = sshconfig.control_path(record(), record().instances[0])
    assert socket is not None and options["controlpath"] == str(socket)
    assert socket.parent == sshconfig.control_dir()
    assert oct(sshconfig.control_dir().stat().st_mode & 0o777) == "0o700"
    assert oct(sshconfig.ssh_dir().stat().st_mode & 0o777) == "0o700"
    # ssh binds "PATH.<16 characters>" first: that too fits the 104 bytes of macOS's sun_path.
    assert len(os.fsencode(socket)) + 17 < 104


def test_a_master_is_never_shared_by_different_logins(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moved instance, or another task on a port an earlier one used, gets a master of its own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(short_tmp))
    first = sshconfig.control_path(record(), record().instances[0])
    assert first == sshconfig.control_path(record(), record().instances[0])
    moved = sshconfig.control_path(record(port=50002), record(port=50002).instances[0])
    other_task = sshconfig.control_path(record(task_id="id-2"), record(task_id="id-2").instances[0])
    assert len({first, moved, other_task}) == 3


def test_no_connection_reuse_when_the_socket_path_would_be_too_long(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = short_tmp / ("d" * 60)
    monkeypatch.setenv("XDG_STATE_HOME", str(deep))
    sshconfig.save(record())
    assert sshconfig.control_path(record(), record().instances[0]) is None
    options = resolved()
    assert options["controlmaster"] == "false" and "controlpath" not in options  # "none": no socket
    assert options["serveraliveinterval"] == "15"  # keepalives all the same


def test_a_percent_in_the_state_directory_stays_a_literal(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssh expands %-tokens in ControlPath: qimg writes %% so that the socket is where qimg looks."""
    monkeypatch.setenv("XDG_STATE_HOME", str(short_tmp / "50%h"))
    sshconfig.save(record())
    socket = sshconfig.control_path(record(), record().instances[0])
    assert socket is not None and "%h" in str(socket)
    assert resolved()["controlpath"] == str(socket)


def test_the_include_line_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    user_config = tmp_path / "ssh_config"
    assert not sshconfig.has_include(user_config)  # no file at all
    user_config.write_text(f"Host *\n    # {sshconfig.include_line()}")  # inside a comment: not included
    assert not sshconfig.has_include(user_config)
    assert sshconfig.install_include(user_config)
    assert sshconfig.has_include(user_config)
    assert not sshconfig.install_include(user_config)
