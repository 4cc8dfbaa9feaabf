"""Engines reached as remote ones are: the local Docker engine behind a TLS front that asks for a
client certificate (as `dockerd --tlsverify` does), its certificates made by openssl."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class Certificates:
    """ca.pem, cert.pem and key.pem (the client's) as DOCKER_CERT_PATH holds them, and the engine's
    own pair in `server/`."""

    folder: Path

    @property
    def server(self) -> tuple[Path, Path]:
        return self.folder / "server" / "cert.pem", self.folder / "server" / "key.pem"


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], capture_output=True, check=True)


def make_certificates(folder: Path) -> Certificates:
    """A CA, the engine's certificate for 127.0.0.1 and a client certificate, both signed by it."""
    (folder / "server").mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", folder / "ca-key.pem", "-out", folder / "ca.pem",
             "-subj", "/CN=qimg test CA", "-days", "2")  # fmt: skip
    for cert, key, subject, extension in (
        (
            *Certificates(folder).server,
            "/CN=engine",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        (folder / "cert.pem", folder / "key.pem", "/CN=client", "extendedKeyUsage=clientAuth"),
    ):
        request = folder / "request.csr"
        _openssl("req", *ec, "-keyout", key, "-out", request, "-subj", subject)
        (folder / "extensions.cnf").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", request, "-CA", folder / "ca.pem", "-CAkey", folder / "ca-key.pem",
                 "-CAcreateserial", "-out", cert, "-days", "2",
                 "-extfile", folder / "extensions.cnf")  # fmt: skip
    return Certificates(folder)


@contextmanager
def tls_front(certificates: Certificates, handshakes: list[str]) -> Iterator[str]:
    """tcp://127.0.0.1:PORT: TLS that requires a client certificate signed by the CA, relayed to the
    local engine's socket; each handshake that passed is appended to `handshakes` (its client's name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificates.server)
    context.load_verify_locations(certificates.folder / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def relay(client: socket.socket) -> None:
        try:
            secured = context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):
            client.close()
            return
        handshakes.append(str(secured.getpeercert()))
        with secured, socket.socket(socket.AF_UNIX) as engine:
            engine.connect(ENGINE_SOCKET)
            threading.Thread(target=_pump, args=(engine, secured), daemon=True).start()
            _pump(secured, engine)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=relay, args=(client,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
