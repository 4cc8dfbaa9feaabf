"""Which key exchange the readiness logins prefer, and when they are kept as masters."""

from __future__ import annotations

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


def test_the_classic_exchange_only_comes_first() -> None:
    # `^`: curve25519 first, the defaults after it, so a server without curve25519 still agrees.
    (option,) = [option for option in CLASSIC_EXCHANGE if option.startswith("KexAlgorithms=")]
    assert option.startswith("KexAlgorithms=^curve25519-sha256")
