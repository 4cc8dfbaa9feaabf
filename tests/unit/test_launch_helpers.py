"""The launcher's pure parts: image references, tunnels, durations, constants, host-key groups, ssh files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qimg.builder.spec import ImageRef
from qimg.errors import UsageError
from qimg.launcher import sshconfig
from qimg.launcher.keys import LoginKey
from qimg.launcher.launch import Tunnel, parse_duration, parse_tunnel, task_constants
from qimg.launcher.ssh import host_keys_in
from qimg.launcher.sshwire import PublicKey


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "srv"),
    [
        ("ubuntu", "docker.io", "library/ubuntu", "latest", "https://docker.io"),
        ("team/sim:dev", "docker.io", "team/sim", "dev", "https://docker.io"),
        ("docker.io/ubuntu:24.04", "docker.io", "library/ubuntu", "24.04", "https://docker.io"),
        ("127.0.0.1:5000/team/alice:e2e", "127.0.0.1:5000", "team/alice", "e2e", "http://127.0.0.1:5000"),
        ("localhost/alice", "localhost", "alice", "latest", "http://localhost"),
        (
            "registry.example.com/a/b/c:1",
            "registry.example.com",
            "a/b/c",
            "1",
            "https://registry.example.com",
        ),
    ],
)
def test_image_ref(ref: str, registry: str, repository: str, tag: str, srv: str) -> None:
    parsed = ImageRef.parse(ref, "IMAGE")
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.server_url) == (
        registry,
        repository,
        tag,
        srv,
    )


def test_tunnels_and_durations() -> None:
    assert parse_tunnel("8888") == Tunnel(8888, 8888)
    assert parse_tunnel("18888:8888") == Tunnel(18888, 8888)
    for bad in ("", "0", "70000", "a:b", "1:2:3", "-1"):
        with pytest.raises(UsageError, match="invalid tunnel"):
            parse_tunnel(bad)
    assert [parse_duration(text, "--max-time") for text in ("90", "90s", "45m", "12h", "2d")] == [
        90, 90, 2700, 43200, 172800,
    ]  # fmt: skip
    for bad in ("0", "1.5h", "forever", "-3"):
        with pytest.raises(UsageError, match="invalid --max-time"):
            parse_duration(bad, "--max-time")


def test_constants_for_hub_and_private_registries() -> None:
    key = LoginKey(
        Path("k.pub"), (PublicKey("ssh-ed25519", b"\0\0\0\x0bssh-ed25519" + b"\0" * 36, "me"),), Path("k")
    )
    hub = task_constants(ImageRef.parse("ubuntu:24.04", "IMAGE"), key, "start", 60, None)
    assert hub == {
        "DOCKER_REPO": "library/ubuntu", "DOCKER_TAG": "24.04", "DOCKER_SSH": key.keys[0].line,
        "DOCKER_CMD": "start", "QIMG_MAX_SECONDS": "60",
    }  # fmt: skip
    private = task_constants(ImageRef.parse("reg.example.com/t/a:1", "IMAGE"), key, "start", 60, ("u", "p"))
    assert private["DOCKER_SRV"] == "https://reg.example.com"
    assert (private["DOCKER_REGISTRY_LOGIN"], private["DOCKER_REGISTRY_PASSWORD"]) == ("u", "p")


def test_after_a_restart_only_the_latest_host_keys_count() -> None:
    output = (
        "qimg-host-key: ssh-ed25519 OLDKEY\nqimg-start: sshd starting\nsshd log line\n"
        "qimg-host-key: ssh-ed25519 NEWKEY\nqimg-host-key: ssh-rsa NEWRSA\nqimg-start: sshd starting\n"
    )
    assert host_keys_in(output) == ["ssh-ed25519 NEWKEY", "ssh-rsa NEWRSA"]
    assert host_keys_in("no keys here\n") == []


def test_ssh_files_are_rewritten_from_the_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    record = sshconfig.TaskRecord(
        "sim", "qarnot", "id-1", "alice", "/keys/id_ed25519",
        [sshconfig.InstanceRecord(0, "gw.example.com", 50001, ["ssh-ed25519 AAAAKEY0"]),
         sshconfig.InstanceRecord(1, "gw.example.com", 50002, ["ssh-ed25519 AAAAKEY1"])],
    )  # fmt: skip
    sshconfig.save(record)
    config = sshconfig.config_path().read_text()
    assert "Host qimg-sim\n" in config and "Host qimg-sim-1\n" in config
    assert "StrictHostKeyChecking yes" in config and "HostKeyAlias qimg-sim-1" in config
    assert (
        sshconfig.known_hosts_path().read_text()
        == "qimg-sim ssh-ed25519 AAAAKEY0\nqimg-sim-1 ssh-ed25519 AAAAKEY1\n"
    )
    assert oct(sshconfig.known_hosts_path().stat().st_mode & 0o777) == "0o600"
    # ssh itself reads the entry as written
    resolved = subprocess.run(
        ["ssh", "-G", "-F", str(sshconfig.config_path()), "qimg-sim-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "port 50002" in resolved and "user alice" in resolved and "stricthostkeychecking true" in resolved
    record.instances[1] = sshconfig.InstanceRecord(1, "gw.example.com", 50099, ["ssh-ed25519 AAAAMOVED"])
    sshconfig.save(record)
    assert "Port 50002" not in sshconfig.config_path().read_text()
    assert "AAAAKEY1" not in sshconfig.known_hosts_path().read_text()
    sshconfig.forget("sim")
    assert "Host" not in sshconfig.config_path().read_text()
    with pytest.raises(UsageError, match="invalid --name"):
        sshconfig.check_task_name("-bad")
