"""Paths written for OpenSSH (F6): a key, a state or a temporary folder with `'`, `"`, `%`, `#`, a space or a
backslash is written so that the real ssh reads back the very path (`ssh -G` prints what it read, after
the expansion of %-tokens and ${VAR} for UserKnownHostsFile and ControlPath); `${` and control characters,
which ssh cannot be given, are refused in one line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from qimg import notices
from qimg.errors import UsageError
from qimg.launcher import records, sshconfig
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint, config_path, pinned_argv

# Every character the config language or ssh's expansions give a meaning to, and some that only look odd.
EXPRESSIBLE = ["o'brien", 'say"hi', "k%d", "k%%", "k%", "k #c", "#k", "back\\slash", "a b", "tab\tx",
               "k$HOME", "k$", "k{x}", "k=v", "~k", "k;x", "k*?[x]", "été"]  # fmt: skip
REFUSED = [("k${HOME}x", "'${'"), ("k${", "'${'"), ("line\nbreak", "control character '\\n'"),
           ("k\x7f", "control character '\\x7f'")]  # fmt: skip


def ssh_reads(*args: str) -> dict[str, str]:
    """`ssh -G ARGS x`: the settings as ssh read them (key -> value, last one wins)."""
    result = subprocess.run(
        ["ssh", "-G", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


@pytest.mark.parametrize("odd", EXPRESSIBLE)
def test_a_path_on_the_command_line_reaches_ssh_unchanged(odd: str) -> None:
    path = f"/tmp/{odd}/known_hosts"
    argv = pinned_argv(Endpoint("127.0.0.1", 2222), "alice", Path(f"/k/{odd}/id"), Path(path), "true")
    read = ssh_reads(*argv[1 : argv.index("-p")], "x")
    assert read["userknownhostsfile"] == path  # after the expansion of %-tokens and ${VAR}
    # -G shows IdentityFile before its expansion (done at login, by the same rules): %% stands for %
    assert read["identityfile"] == f"/k/{odd}/id".replace("%", "%%")


@pytest.mark.parametrize("odd", EXPRESSIBLE)
def test_qimgs_ssh_config_is_read_back_unchanged(
    odd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = Path("/tmp") / f"q{odd}"  # short: the ControlPath must fit a socket path
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    try:
        identity = tmp_path / odd / "id"
        instance = InstanceRecord(0, Endpoint("127.0.0.1", 2222), ["ssh-ed25519 AAAA"])
        record = TaskRecord("t1", "local", "id-1", "alice", identity, None, [instance])
        warned: list[str] = []
        with notices.to(warned.append):
            sshconfig.save(record)
        assert warned == []
        assert records.load("t1") == record  # the record reads back: it is not set aside
        socket = sshconfig.control_path(record, record.instances[0])
        assert socket is not None
        read = ssh_reads("-F", str(sshconfig.config_path()), "qimg-t1")
        assert read["userknownhostsfile"] == str(sshconfig.known_hosts_path())
        assert read["controlpath"] == str(socket)
        assert read["identityfile"] == str(identity).replace("%", "%%")
        assert read["hostname"] == "127.0.0.1" and read["port"] == "2222" and read["user"] == "alice"

        # The Include line `ssh-config --install` writes: ssh globs its path, and finds qimg's config.
        user_config = tmp_path / "user_config"
        assert sshconfig.install_include(user_config)
        assert sshconfig.has_include(user_config)
        assert ssh_reads("-F", str(user_config), "qimg-t1")["port"] == "2222"
    finally:
        subprocess.run(["rm", "-rf", "--", str(state)], check=True)


@pytest.mark.parametrize(("odd", "named"), REFUSED)
def test_what_ssh_cannot_be_given_is_refused_in_one_line(odd: str, named: str) -> None:
    with pytest.raises(UsageError, match=re.escape(named)) as refused:
        config_path(f"/k/{odd}/id", "the key")
    assert "\n" not in str(refused.value) and repr(f"/k/{odd}/id") in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "fix"), [("XDG_STATE_HOME", "set XDG_STATE_HOME"), ("TMPDIR", "set TMPDIR")]
)
def test_a_launch_checks_every_path_its_logins_give_ssh(
    variable: str, fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "k${USER}"
    odd.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv(variable, str(odd))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    with pytest.raises(UsageError, match=re.escape("'${'") + f".*; {fix} to a folder without it"):
        sshconfig.check_login_paths(tmp_path / "id")
    with pytest.raises(UsageError, match=r"the key .*; move the key pair"):
        sshconfig.check_login_paths(odd / "id")


def test_a_record_ssh_cannot_be_given_is_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = TaskRecord("t1", "local", "id-1", "alice", Path('/k/o"b/id'), None, [])
    records.store(good)
    assert records.load("t1") == good
    records.store(TaskRecord("t2", "local", "id-2", "alice", Path("/k/${HOME}/id"), None, []))
    with pytest.raises(records.BrokenRecord, match="identity"):
        records.load("t2")
