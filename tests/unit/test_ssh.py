"""Host keys are read and pinned exactly; ssh never runs with host-key checking off."""

from __future__ import annotations

import subprocess
from pathlib import Path

from qimg.launcher.keys.generate import throwaway_key
from qimg.launcher.ssh import Endpoint, host_keys_in, pinned_argv, write_known_hosts


def test_host_keys_in_start_output_and_qarnot_prefixes() -> None:
    output = (
        "qimg-host-key: ssh-ed25519 AAAAC3Nza1\n"
        "0> qimg-host-key: ssh-rsa AAAAB3Nza2\n"
        "1> qimg-host-key: ssh-ed25519 AAAAC3Nza1\n"
        "sshd log: qimg-host-key: broken\n"
        "qimg-start: sshd starting\n"
    )
    assert host_keys_in(output) == ["ssh-ed25519 AAAAC3Nza1", "ssh-rsa AAAAB3Nza2"]


def test_known_hosts_is_accepted_by_ssh_keygen(tmp_path: Path) -> None:
    key = throwaway_key(tmp_path).keys[0].line.rsplit(" ", 1)[0]
    known_hosts = tmp_path / "known_hosts"
    write_known_hosts(known_hosts, {Endpoint("127.0.0.1", 2222).known_hosts_name: [key]})
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    found = subprocess.run(
        ["ssh-keygen", "-F", "[127.0.0.1]:2222", "-f", str(known_hosts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0 and key in found.stdout


def test_pinned_argv_pins_host_keys(tmp_path: Path) -> None:
    argv = pinned_argv(Endpoint("127.0.0.1", 2200), "alice", tmp_path / "id", tmp_path / "kh", "id")
    text = " ".join(argv)
    assert "StrictHostKeyChecking=yes" in text
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in text
    assert "BatchMode=yes" in text and "IdentitiesOnly=yes" in text
    assert argv[:3] == ["ssh", "-F", "/dev/null"], "the user's ~/.ssh/config is never read"
    assert argv[-3:] == ["alice", "127.0.0.1", "id"]


def test_after_a_restart_only_the_latest_host_keys_count() -> None:
    output = (
        "qimg-host-key: ssh-ed25519 OLDKEY\nqimg-start: sshd starting\nsshd log line\n"
        "qimg-host-key: ssh-ed25519 NEWKEY\nqimg-host-key: ssh-rsa NEWRSA\nqimg-start: sshd starting\n"
    )
    assert host_keys_in(output) == ["ssh-ed25519 NEWKEY", "ssh-rsa NEWRSA"]
    assert host_keys_in("no keys here\n") == []


def test_thousands_of_printed_host_keys_pin_one_per_type() -> None:
    """[F7] A container printing 20 000 well-formed keys: at most one of each type is pinned, the last."""
    bogus = "".join(f"qimg-host-key: ssh-ed25519 AAAA{n:05d}\n" for n in range(20_000))
    output = bogus + "qimg-host-key: ssh-ed25519 REALKEY\nqimg-host-key: ssh-rsa REALRSA\nsshd starting\n"
    assert host_keys_in(output) == ["ssh-ed25519 REALKEY", "ssh-rsa REALRSA"]
