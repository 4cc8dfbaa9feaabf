"""--tunnel: what is accepted, what is refused before anything starts."""

from __future__ import annotations

import socket

import pytest

from qimg.errors import UsageError
from qimg.launcher.tunnels import Tunnel, image_tunnels, is_port_free, parse_tunnel, parse_tunnels


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


def test_the_image_forward_ports_are_tunnels_from_the_same_local_port() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert image_tunnels((port, port)) == (Tunnel(port, port),)  # each once
    assert image_tunnels(()) == ()


def test_a_taken_forward_port_is_refused_naming_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError) as refused:
            image_tunnels((port,))
    assert str(refused.value) == (
        f"local port {port} (the image's forwardPorts) is already in use: forward it from another with "
        f"--tunnel LOCAL:{port}, or run with --no-tunnel"
    )


def test_a_port_in_time_wait_is_free_to_ssh() -> None:
    """A forward's last connections linger in TIME_WAIT once its ssh is gone: ssh binds past them."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    assert is_port_free(port)
