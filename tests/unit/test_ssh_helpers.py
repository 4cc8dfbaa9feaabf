"""Host keys are read and pinned exactly; ssh never runs with host-key checking off."""

from __future__ import annotations

import subprocess
from pathlib import Path

from qimg.builder.distro import family_of, parse_os_release
from qimg.builder.spec import Distro
from qimg.launcher.ssh import Endpoint, host_keys_in, make_throwaway_identity, ssh_argv, write_known_hosts


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
    identity = make_throwaway_identity(tmp_path)
    key = " ".join(identity.public_line.split()[:2])
    known_hosts = tmp_path / "known_hosts"
    write_known_hosts(known_hosts, {Endpoint("127.0.0.1", 2222, "alice").known_hosts_name: [key]})
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    found = subprocess.run(
        ["ssh-keygen", "-F", "[127.0.0.1]:2222", "-f", str(known_hosts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0 and key in found.stdout


def test_ssh_argv_pins_host_keys(tmp_path: Path) -> None:
    argv = ssh_argv(Endpoint("127.0.0.1", 2200, "alice"), tmp_path / "id", tmp_path / "kh", "id")
    text = " ".join(argv)
    assert "StrictHostKeyChecking=yes" in text
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in text
    assert "BatchMode=yes" in text and "IdentitiesOnly=yes" in text
    assert argv[:3] == ["ssh", "-F", "/dev/null"], "the user's ~/.ssh/config is never read"
    assert argv[-3:] == ["alice", "127.0.0.1", "id"]


def test_os_release_families() -> None:
    ubuntu = parse_os_release('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n')
    assert family_of(ubuntu) is Distro.DEBIAN
    assert family_of(parse_os_release('ID="rocky"\nID_LIKE="rhel centos fedora"')) is Distro.RHEL
    assert family_of(parse_os_release("ID=almalinux")) is Distro.RHEL
    assert family_of(parse_os_release("ID=alpine")) is Distro.ALPINE
    assert family_of(parse_os_release('ID=opensuse-leap\nID_LIKE="suse opensuse"')) is None
