"""--tunnel: what is accepted, what is refused before anything starts."""

from __future__ import annotations

import socket

import pytest

from qimg.errors import UsageError
from qimg.launcher.tunnels import Tunnel, parse_tunnel, parse_tunnels


def test_tunnel_specs() -> None:
    assert parse_tunnel("8888") == Tunnel(8888, 8888)
    assert parse_tunnel("18888:8888") == Tunnel(18888, 8888)
    for bad in ("", "0", "70000", "a:b", "1:2:3", "-1"):
        with pytest.raises(UsageError, match="invalid tunnel"):
            parse_tunnel(bad)


def test_a_local_port_twice_or_in_use_is_refused() -> None:
    with pytest.raises(UsageError, match="given twice"):
        parse_tunnels(["18888:8888", "18888:9999"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"local port {port} is already in use"):
            parse_tunnels([str(port)])
