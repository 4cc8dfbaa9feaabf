"""Where the engine is and how a request reaches it: `EngineTarget` (made by the engine's
resolution) and `connection`, one HTTP connection to it.

The platform-specific transports live here and nowhere else: a unix socket (imported lazily by
its address family, so that the module imports on Windows), plain tcp.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from qimg.errors import UsageError

DEFAULT_HOST = "unix:///var/run/docker.sock"
LOCAL = "the local engine"  # the name of DEFAULT_HOST, reached when nothing names another engine


@dataclass(frozen=True)
class TlsFiles:
    """The client's TLS material: the CA that signs the engine's certificate, the client's own
    certificate and key (DOCKER_CERT_PATH's ca.pem, cert.pem, key.pem, or a context's)."""

    ca: Path | None
    cert: Path | None
    key: Path | None
    verify: bool = True


@dataclass(frozen=True)
class EngineTarget:
    """One engine, as every command of one qimg process reaches it."""

    name: str  # what qimg calls it in its messages: "context NAME", "DOCKER_HOST", "the local engine"
    host: str  # unix:///path, tcp://HOST:PORT
    tls: TlsFiles | None = None
    context: str = ""  # the Docker context it was named by, for the docker CLI (`docker --context`)

    @property
    def described(self) -> str:
        """The engine as the user set it: `DOCKER_HOST=tcp://...`, `context NAME (unix:///...)`."""
        return f"{self.name}={self.host}" if self.name == "DOCKER_HOST" else f"{self.name} ({self.host})"

    @property
    def switch(self) -> str:
        """How to go back to the local engine."""
        if self.name == "DOCKER_HOST":
            return "unset it to use the local engine"
        if self.name.startswith("context "):
            return "use another context (docker context use default)"
        return "set DOCKER_HOST to another engine"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def unanswered(target: EngineTarget, reason: str) -> str:
    """The one line for an engine that does not answer, with how to start it: Podman's service, whose
    socket users point qimg at, is started by systemd's socket unit or by hand."""
    if "podman" in urlsplit(target.host).path.split("/")[-1]:
        return (
            f"Podman does not answer at {target.host} ({reason}{_of(target)}): start its service "
            "(systemctl --user start podman.socket, or podman system service --time=0 &)"
        )
    return f"the Docker engine does not answer at {target.host} ({reason}{_of(target)}): start it, or " + (
        "run `make env` as root" if target.name == LOCAL else target.switch
    )


def _of(target: EngineTarget) -> str:
    return f"; {target.name}" if target.name.startswith("context ") else ""


def check_host(target: EngineTarget) -> None:
    """Refuse, as a usage error, a host qimg cannot reach."""
    _address(target)


def _address(target: EngineTarget) -> tuple[str, tuple[str, int] | None]:
    """(socket path, None) or ("", (host, port))."""
    host = target.host
    try:
        parts = urlsplit(host)
        port = parts.port  # ValueError too: a bracket left open ([::1:2375), a port not a number
    except ValueError:
        parts, port = urlsplit(""), None
    if parts.scheme == "unix" and parts.path:
        return parts.path, None
    if parts.scheme in {"tcp", "http"} and parts.hostname and port:
        return "", (parts.hostname, port)
    raise UsageError(
        f"{target.described}: qimg reaches the engine through a unix socket or plain tcp "
        f"(unix:///var/run/docker.sock, tcp://HOST:PORT): {target.switch}"
    )


def connection(target: EngineTarget, timeout: float) -> http.client.HTTPConnection:
    """A new connection to the engine (not connected yet: the first request connects it)."""
    socket_path, address = _address(target)
    if socket_path:
        return _UnixConnection(socket_path, timeout)
    assert address is not None
    return http.client.HTTPConnection(*address, timeout=timeout)
