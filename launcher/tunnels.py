"""`--tunnel LOCAL[:REMOTE]`: local ports forwarded to the task through ssh (`-L`), on loopback only."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from qimg.errors import UsageError


@dataclass(frozen=True)
class Tunnel:
    local: int
    remote: int

    @property
    def ssh_option(self) -> tuple[str, str]:
        return "-L", f"127.0.0.1:{self.local}:127.0.0.1:{self.remote}"


def parse_tunnel(spec: str) -> Tunnel:
    match = re.fullmatch(r"(\d{1,5})(?::(\d{1,5}))?", spec)
    ports = [int(p) for p in match.groups() if p] if match else []
    if not ports or not all(0 < port < 65536 for port in ports):
        raise UsageError(f"invalid tunnel {spec!r}: expected LOCAL[:REMOTE] ports, e.g. 8888 or 8888:8888")
    return Tunnel(ports[0], ports[-1])


def parse_tunnels(specs: tuple[str, ...] | list[str]) -> tuple[Tunnel, ...]:
    """Every --tunnel, checked: well formed, each local port once, and free now."""
    tunnels = tuple(parse_tunnel(spec) for spec in specs)
    for number, tunnel in enumerate(tunnels):
        if any(other.local == tunnel.local for other in tunnels[:number]):
            raise UsageError(f"--tunnel: local port {tunnel.local} is given twice: one tunnel per local port")
    for tunnel in tunnels:
        check_port_free(tunnel)
    return tunnels


def image_tunnels(forward_ports: tuple[int, ...]) -> tuple[Tunnel, ...]:
    """The tunnels of an image's devcontainer `forwardPorts`, when no --tunnel is given: each from the
    same local port. One that is taken is refused (a URL the project documents names that port: another
    one chosen silently would not match it), naming the option that forwards it from another."""
    tunnels = tuple(Tunnel(port, port) for port in dict.fromkeys(forward_ports))
    for tunnel in tunnels:
        if not is_port_free(tunnel.local):
            raise UsageError(
                f"local port {tunnel.local} (the image's forwardPorts) is already in use: forward it from "
                f"another with --tunnel LOCAL:{tunnel.remote}, or run with --no-tunnel"
            )
    return tunnels


def is_port_free(port: int) -> bool:
    """Whether ssh can listen on the local port now. Probed as ssh binds a forward (SO_REUSEADDR): a
    port whose last connections linger in TIME_WAIT is free to it, one with a listener is not."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_port_free(tunnel: Tunnel) -> None:
    if not is_port_free(tunnel.local):
        raise UsageError(
            f"local port {tunnel.local} is already in use: pick another, e.g. --tunnel "
            f"{tunnel.local + 1}:{tunnel.remote}"
        )
