"""Where the engine is and how a request reaches it: `EngineTarget` (made by the engine's
resolution) and `connection`, one HTTP connection to it.

The platform-specific transports live here and nowhere else: a unix socket (imported lazily by
its address family, so that the module imports on Windows), tcp (plain or TLS), and ssh.

An `ssh://[USER@]HOST[:PORT]` engine is reached as the docker CLI reaches it: every connection is an
`ssh ... -- HOST docker system dial-stdio` whose standard input and output are the socket itself,
with the user's own ssh configuration (keys, agent, known hosts, ControlMaster). What the CLI does
that this does not: it asks for passwords and passphrases (qimg runs ssh with BatchMode=yes: keys
come from the agent or unencrypted files), and it keeps connections open between requests (here
each request is a new ssh, unless the user's configuration multiplexes them). The Docker SDK, for
build and push, is given a unix socket (`ssh_relay`) whose every connection is dialled the same way,
instead of its paramiko transport.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from qimg import http1
from qimg.errors import UsageError

if TYPE_CHECKING:
    import ssl

DEFAULT_HOST = "unix:///var/run/docker.sock"
LOCAL = "the local engine"  # the name of DEFAULT_HOST, reached when nothing names another engine


@dataclass(frozen=True)
class TlsFiles:
    """The client's TLS material, the engine's certificate always verified: the CA that signs it
    (None: the system's CAs), the client's own certificate and key (DOCKER_CERT_PATH's ca.pem,
    cert.pem, key.pem, or a context's)."""

    ca: Path | None
    cert: Path | None
    key: Path | None


@dataclass(frozen=True)
class EngineTarget:
    """One engine, as every command of one qimg process reaches it."""

    name: str  # what qimg calls it in its messages: "context NAME", "DOCKER_HOST", "the local engine"
    host: str  # unix:///path, tcp://HOST:PORT, ssh://[USER@]HOST[:PORT]
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

    @property
    def on_this_machine(self) -> bool:
        """Whether the ports the engine publishes on its loopback are this machine's: a unix socket,
        or a tcp or ssh host that is this machine's loopback."""
        address = _address(self)
        if address.scheme == "unix":
            return True
        if address.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(address.host).is_loopback
        except ValueError:
            return False

    def require_ports_here(self, command: str) -> None:
        """Refuse, before anything starts, a login to a container of an engine on another machine:
        its ssh port is published on that machine's loopback."""
        if not self.on_this_machine:
            where = _address(self).host
            raise UsageError(
                f"{command} logs in to the container's ssh port, which {self.described} publishes on "
                f"{where}'s loopback, out of this machine's reach: run qimg on {where}, or use a local "
                "engine (build, push, ls --local and stop --local work from here)"
            )


@dataclass(frozen=True)
class _Address:
    scheme: str  # unix, tcp, ssh
    path: str = ""  # the socket's, for unix
    host: str = ""
    port: int | None = None
    user: str | None = None


def _address(target: EngineTarget) -> _Address:
    try:
        parts = urlsplit(target.host)
        port = parts.port  # ValueError too: a bracket left open ([::1:2375), a port not a number
    except ValueError:
        parts, port = urlsplit(""), None
    if parts.scheme == "unix" and parts.path:
        return _Address("unix", path=parts.path)
    if (
        parts.scheme in {"tcp", "http", "https"}
        and parts.hostname
        and port
        and _has_idna_name(parts.hostname)
    ):
        return _Address("tcp", host=parts.hostname, port=port)
    if (
        parts.scheme == "ssh"
        and parts.hostname
        and not parts.hostname.startswith("-")
        and not parts.path.strip("/")
    ):
        return _Address("ssh", host=parts.hostname, port=port, user=parts.username)
    raise UsageError(
        f"{target.described}: qimg reaches the engine through a unix socket, tcp or ssh "
        f"(unix:///var/run/docker.sock, tcp://HOST:PORT, ssh://USER@HOST): {target.switch}"
    )


def _has_idna_name(host: str) -> bool:
    """Whether a tcp host's name can be looked up and sent (a non-ASCII one as IDNA: `ö..x` cannot)."""
    if host.isascii():
        return True
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def check_host(target: EngineTarget) -> None:
    """Refuse, as a usage error, a host qimg cannot reach (and TLS material it cannot load)."""
    address = _address(target)
    if target.tls is not None:
        if address.scheme != "tcp":
            raise UsageError(f"{target.described}: TLS goes with a tcp:// host: {target.switch}")
        tls_context(target.tls)


@cache
def tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """The client side of TLS: the engine's certificate verified against the CA (and its host name
    checked), the client's certificate offered."""
    import ssl  # only for TLS engines: the local socket's commands do not pay for it

    try:
        context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    except (OSError, ssl.SSLError) as error:
        raise UsageError(f"{tls.ca}: not a CA certificate ({_reason(error)}): fix or replace it") from None
    if tls.cert and tls.key:
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as error:
            raise UsageError(
                f"{tls.cert} and {tls.key}: not a certificate and its key ({_reason(error)}): fix or "
                "replace them"
            ) from None
    return context


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)


class _UnixConnection(http1.Connection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def dial_stdio(address: _Address, end: socket.socket, timeout: float) -> subprocess.Popen[bytes]:
    """`ssh ... docker system dial-stdio`, speaking on `end` (the engine's side of a socket pair, or
    a relayed connection): the docker CLI's own way to an ssh engine."""
    login = ["-l", address.user] if address.user else []
    port = ["-p", str(address.port)] if address.port else []
    seconds = max(1, round(timeout))
    argv = [
        "ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={min(seconds, 30)}",
        "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3",  # a dead link ends ssh
        *login, *port, "--", address.host, "docker", "system", "dial-stdio",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdin=end.fileno(), stdout=end.fileno(), stderr=subprocess.PIPE)


class _TlsConnection(http1.Connection):
    """TLS, the engine's certificate verified as the context says (its host name checked), whose
    failures (a handshake refused on either side, in TLS 1.3 seen only at the first read) say they
    are TLS's."""

    default_port = 443

    def __init__(self, host: str, port: int | None, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout)
        self.context = context

    def connect(self) -> None:
        with _tls_failures():
            super().connect()
            assert self.sock is not None
            try:
                self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
            except BaseException:
                self.sock.close()
                raise

    def send(self, data: bytes) -> None:
        with _tls_failures():
            super().send(data)

    def getresponse(self) -> http1.Response:
        with _tls_failures():
            return super().getresponse()


@contextmanager
def _tls_failures() -> Iterator[None]:
    import ssl

    try:
        yield
    except ssl.SSLError as error:
        raise ConnectionError(f"{_TLS}{error.reason or error.strerror or error}") from None


_TLS = "TLS: "  # how a TLS failure's reason starts


class _SshConnection(http1.Connection):
    """A connection whose socket is the local end of a pair, the other end being ssh's stdio. ssh
    ends when the socket is closed (and the reply that reads from it), and a thread of its own reads
    what it says and reaps it."""

    def __init__(self, address: _Address, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.address = address
        self.said = b""
        self.ended: threading.Thread | None = None

    def connect(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            process = dial_stdio(self.address, theirs, self.timeout or 30)
        ours.settimeout(self.timeout)
        self.sock = ours
        self.ended = threading.Thread(target=self._follow, args=(process,), daemon=True)
        self.ended.start()

    def _follow(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        with process.stderr:
            self.said = process.stderr.read(1 << 16)
        process.wait()

    def failure(self, error: OSError | http1.BadReply) -> str:
        """ssh's last words, when it ended instead of carrying the request or the whole reply (not
        when it runs on: its warnings are not why the engine's reply failed)."""
        if self.ended is None:
            return str(error)
        self.ended.join(timeout=5)
        lines = self.said.decode("utf-8", "replace").strip().splitlines()
        if self.ended.is_alive() or not lines:
            return str(error)
        last = lines[-1][:200]
        return last if last.startswith("ssh: ") else f"ssh: {last}"


def connection(target: EngineTarget, timeout: float) -> http1.Connection:
    """A new connection to the engine (not connected yet: the first request connects it)."""
    address = _address(target)
    if address.scheme == "unix":
        return _UnixConnection(address.path, timeout)
    if address.scheme == "ssh":
        return _SshConnection(address, timeout)
    if target.tls is not None:
        return _TlsConnection(address.host, address.port, timeout=timeout, context=tls_context(target.tls))
    return http1.Connection(address.host, address.port, timeout=timeout)


class SshRelay:
    """A unix socket, private to this process, whose every connection is dialled to an ssh engine:
    what the Docker SDK (build, push) is pointed at for `ssh://` hosts."""

    def __init__(self, target: EngineTarget) -> None:
        self.address = _address(target)
        self.folder = tempfile.TemporaryDirectory(prefix="qimg-engine-")  # mode 0700: only the user's
        self.path = str(Path(self.folder.name) / "docker.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def _serve(self) -> None:
        while True:
            try:
                accepted, _ = self.listener.accept()
            except OSError:  # closed
                return
            with accepted:
                process = dial_stdio(self.address, accepted, 300)
            threading.Thread(target=process.communicate, daemon=True).start()  # reaped when it ends


def unanswered(target: EngineTarget, reason: str) -> str:
    """The one line for an engine that does not answer, with how to start it: Podman's service, whose
    socket users point qimg at, is started by systemd's socket unit or by hand."""
    if "podman" in urlsplit(target.host).path.split("/")[-1]:
        return (
            f"Podman does not answer at {target.host} ({reason}{_of(target)}): start its service "
            "(systemctl --user start podman.socket, or podman system service --time=0 &)"
        )
    if target.tls is not None and reason.startswith(_TLS):
        return (
            f"the engine at {target.host} refused the TLS handshake, or qimg refused its certificate "
            f"({reason}{_of(target)}): check the certificates ({_tls_source(target)})"
        )
    return f"the Docker engine does not answer at {target.host} ({reason}{_of(target)}): start it, or " + (
        "run `make env` as root" if target.name == LOCAL else target.switch
    )


def _tls_source(target: EngineTarget) -> str:
    return "DOCKER_CERT_PATH" if target.name == "DOCKER_HOST" else "the context's: docker context inspect"


def _of(target: EngineTarget) -> str:
    return f"; {target.name}" if target.name.startswith("context ") else ""
