"""An engine whose reply never ends (a hostile or broken one): qimg reads a bounded part of it and
says so in one line, instead of holding all of it until memory runs out (a MemoryError's traceback,
or the kernel's OOM killer)."""

from __future__ import annotations

import contextlib
import socketserver
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qimg.engine_api import MAX_REPLY, Engine, EngineError
from qimg.engine_transport import EngineTarget
from qimg.errors import DockerUnavailable
from tests.fakes.http import UnixHTTPServer, serving
from tests.helpers import assert_one_line_error, run_qimg, stand_in

PING = b"HTTP/1.1 200 OK\r\nAPI-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
Reply = Callable[[socketserver.StreamRequestHandler], None]


def endless(head: bytes, piece: bytes) -> Reply:
    """A reply: `head`, then `piece` again and again until the client hangs up."""

    def write(handler: socketserver.StreamRequestHandler) -> None:
        with contextlib.suppress(OSError):
            handler.wfile.write(head)
            while True:
                handler.wfile.write(piece)

    return write


@pytest.fixture
def endless_engine(tmp_path: Path) -> Iterator[tuple[str, dict[str, Reply]]]:
    """An engine on a unix socket (its DOCKER_HOST) answering each path (the version left out) as told;
    /_ping as Docker 20.10 does."""
    replies: dict[str, Reply] = {}

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            target = self.rfile.readline().split(b" ")[1].decode()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            path = target.split("?")[0].split("/", 2)[-1] if target.startswith("/v1.") else target[1:]
            if f"/{path}" in replies:
                replies[f"/{path}"](self)
            else:
                self.wfile.write(
                    PING if path == "_ping" else b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                )

    socket_path = tmp_path / "engine.sock"
    with serving(UnixHTTPServer(str(socket_path), Handler)):
        yield f"unix://{socket_path}", replies


SPACES = b" " * 65536
ENDLESS = {
    "a body until the connection's end": endless(b"HTTP/1.1 200 OK\r\n\r\n[", SPACES),
    "endless chunks": endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"10000\r\n%s\r\n" % SPACES
    ),
    "an endless refusal": endless(b"HTTP/1.1 500 Oops\r\n\r\n", b"x" * 65536),
}


@pytest.mark.parametrize("reply", ENDLESS.values(), ids=ENDLESS.keys())
def test_an_endless_reply_is_one_line(endless_engine: tuple[str, dict[str, Reply]], reply: Reply) -> None:
    host, replies = endless_engine
    replies["/containers/json"] = reply
    result = run_qimg("ls", "--local", env={"DOCKER_HOST": host}, timeout=120)
    assert_one_line_error(result, 1, f"is longer than {MAX_REPLY >> 20} MiB")


def test_a_build_message_that_never_ends_is_one_line(endless_engine: tuple[str, dict[str, Reply]]) -> None:
    host, replies = endless_engine
    replies["/build"] = endless(b'HTTP/1.1 200 OK\r\n\r\n{"stream": "', b"a" * 65536)
    messages: list[object] = []
    with pytest.raises(EngineError, match="a message of the build's stream is longer than"):
        Engine(EngineTarget("DOCKER_HOST", host)).build(b"", {}, messages.append)
    assert messages == []


def test_an_ssh_engine_whose_ssh_dies_mid_reply_says_what_ssh_said(tmp_path: Path) -> None:
    """`ssh ... docker system dial-stdio` that ends inside the reply's body: ssh's last words, not the
    socket's "connection reset" (as when it ends before the reply's headers)."""
    path = stand_in(
        tmp_path / "bin", "ssh",
        "head -c 1 >/dev/null\n"  # the request's first byte: ssh dies with the rest unread
        "printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\n['\n"
        "echo 'Connection to engine.example closed by remote host.' >&2\nexit 255\n",
    )  # fmt: skip
    env = {**path, "DOCKER_HOST": "ssh://alice@engine.example", "DOCKER_API_VERSION": "1.41"}
    result = run_qimg("ls", "--local", env=env)
    assert_one_line_error(
        result, 1, "does not answer at ssh://alice@engine.example (ssh: Connection to engine.example closed"
    )


def stalled(head: bytes) -> Reply:
    """A reply: `head`, then nothing, the connection kept open (an engine hung mid-reply)."""

    def write(handler: socketserver.StreamRequestHandler) -> None:
        handler.wfile.write(head)
        handler.rfile.read()  # until the client hangs up

    return write


@pytest.mark.parametrize(
    "head", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[1"], ids=["no head", "mid-body"]
)
def test_an_engine_that_stalls_is_given_up_on_at_the_timeout(
    endless_engine: tuple[str, dict[str, Reply]], head: bytes
) -> None:
    host, replies = endless_engine
    replies["/containers/json"] = stalled(head)
    with pytest.raises(DockerUnavailable, match=r"does not answer at unix://.* \(timed out\)"):
        Engine(EngineTarget("DOCKER_HOST", host), timeout=0.5).containers(["a=b"])
