"""Which key exchange the readiness logins prefer, and when they are kept as masters."""

from __future__ import annotations

import subprocess
from pathlib import Path

from qimg.launcher.kept_logins import CLASSIC_EXCHANGE, readiness_options


def test_a_login_that_carries_nothing_prefers_the_classic_exchange() -> None:
    assert readiness_options(None, loopback=False) == CLASSIC_EXCHANGE
    assert readiness_options(None, loopback=True) == CLASSIC_EXCHANGE


def test_a_kept_login_keeps_the_default_exchange_unless_on_the_loopback(tmp_path: Path) -> None:
    remote = readiness_options(tmp_path, loopback=False)
    local = readiness_options(tmp_path, loopback=True)
    assert "ControlMaster=yes" in remote and f"ControlPath={tmp_path}/%C" in remote
    assert not any(option.startswith("KexAlgorithms") for option in remote)
    assert local == (*CLASSIC_EXCHANGE, *remote)


def test_the_classic_exchange_is_one_the_ssh_client_takes() -> None:
    """curve25519 first, then the rest of the classic defaults (a server without curve25519 still
    agrees): OpenSSH reads the option as given, nothing post-quantum in it."""
    resolved = subprocess.run(
        ["ssh", "-G", "-F", "/dev/null", *CLASSIC_EXCHANGE, "example.invalid"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (line,) = [line for line in resolved.splitlines() if line.startswith("kexalgorithms ")]
    algorithms = line.split()[1].split(",")
    assert algorithms[0] == "curve25519-sha256" and len(algorithms) > 2
    assert not any("sntrup" in name or "mlkem" in name for name in algorithms)
