"""qimg's ssh files, rewritten from the task records; ssh itself reads them as written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qimg.errors import UsageError
from qimg.launcher import records, sshconfig
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint


def test_ssh_files_are_rewritten_from_the_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = TaskRecord(
        "sim", "qarnot", "id-1", "alice", Path("/keys/id_ed25519"), None,
        [InstanceRecord(0, Endpoint("gw.example.com", 50001), ["ssh-ed25519 AAAAKEY0"]),
         InstanceRecord(1, Endpoint("gw.example.com", 50002), ["ssh-ed25519 AAAAKEY1"])],
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
    record.instances[1] = InstanceRecord(1, Endpoint("gw.example.com", 50099), ["ssh-ed25519 AAAAMOVED"])
    sshconfig.save(record)
    assert "Port 50002" not in sshconfig.config_path().read_text()
    assert "AAAAKEY1" not in sshconfig.known_hosts_path().read_text()
    sshconfig.forget("sim")
    assert "Host" not in sshconfig.config_path().read_text()
    with pytest.raises(UsageError, match="invalid --name"):
        records.check_task_name("-bad")
