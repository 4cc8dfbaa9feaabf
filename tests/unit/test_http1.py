"""qimg's own HTTP/1.1 client (`qimg.http1`), read against the reference, `http.client`, on the same
bytes: the same status, headers and body for every reply both read; and each thing its docstring says
it does not do refused in one line, never read wrongly."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator

import pytest

from qimg import http1


class _Pair(http1.Connection):
    """A connection whose socket is one end of a pair, the test playing the engine at the other."""

    def __init__(self, end: socket.socket) -> None:
        super().__init__("localhost", timeout=5)
        self.end = end

    def connect(self) -> None:
        self.sock = self.end


def _serve(raw: bytes, piece: int) -> tuple[socket.socket, list[bytes]]:
    """Our end of a pair whose other end reads a request, then writes `raw` in pieces of `piece` bytes
    (every cut a socket may make) and closes. The request it read is in the list once it answered."""
    ours, theirs = socket.socketpair()
    received: list[bytes] = []

    def engine() -> None:
        with theirs:
            theirs.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = theirs.recv(65536)
                if not chunk:
                    break
                request += chunk
            received.append(request)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that refused
                for start in range(0, len(raw), piece):
                    theirs.sendall(raw[start : start + piece])

    threading.Thread(target=engine, daemon=True).start()
    return ours, received


def ours(raw: bytes, piece: int = 1 << 20) -> tuple[int, str, dict[str, str | None], bytes]:
    connection = _Pair(_serve(raw, piece)[0])
    try:
        connection.request("GET", "/_ping")
        reply = connection.getresponse()
        headers = {name: reply.getheader(name) for name in NAMES}
        return reply.status, reply.reason, headers, reply.read()
    finally:
        connection.close()


def reference(raw: bytes) -> tuple[int, str, dict[str, str | None], bytes]:
    end, _ = _serve(raw, 1 << 20)
    with end:
        end.sendall(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = http.client.HTTPResponse(end, method="GET")
        reply.begin()
        headers = {name: reply.getheader(name) for name in NAMES}
        return reply.status, reply.reason, headers, reply.read()


NAMES = ("API-Version", "content-type", "X-Twice", "Missing")
BODY = b'{"message": "a body", "bytes": "\x00\xff"}'
READ_ALIKE = {
    "length": b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    "chunks": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b"5\r\n" + BODY[:5] + b"\r\nA;ext=1\r\n" + BODY[5:15] + b"\r\n" + b"%X\r\n" % (len(BODY) - 15)
        + BODY[15:] + b"\r\n0\r\nTrailer: dropped\r\n\r\n"
    ),
    "until closed": b"HTTP/1.0 200 Fine\r\nX-Twice: a\r\nX-Twice: b\r\n\r\n" + BODY,
    "no content": b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "no reason": b"HTTP/1.1 404\r\nContent-Length: 2\r\n\r\n{}",
    "bare line ends": b"HTTP/1.1 500 Oops\nContent-Length: 3\n\nbad",
    "an empty chunked body": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
}  # fmt: skip


@pytest.mark.parametrize("raw", READ_ALIKE.values(), ids=READ_ALIKE.keys())
def test_a_reply_reads_as_the_reference_reads_it(raw: bytes) -> None:
    assert ours(raw) == reference(raw)


@pytest.mark.parametrize("piece", [1, 2, 3, 7])
def test_a_reply_reads_the_same_whatever_the_cuts(piece: int) -> None:
    for raw in READ_ALIKE.values():
        assert ours(raw, piece) == reference(raw)


def test_a_body_is_read_in_parts_as_asked() -> None:
    connection = _Pair(_serve(READ_ALIKE["chunks"], 3)[0])
    connection.request("GET", "/logs")
    reply = connection.getresponse()
    parts = []
    while part := reply.read1(4):
        assert len(part) <= 4
        parts.append(part)
    assert b"".join(parts) == BODY and reply.read() == b"" and reply.read1(10) == b""
    connection.close()
    connection = _Pair(_serve(READ_ALIKE["length"], 5)[0])
    connection.request("GET", "/logs")
    reply = connection.getresponse()
    assert reply.read(7) == BODY[:7] and reply.read(0) == b"" and reply.read() == BODY[7:]
    connection.close()


def test_the_request_is_sent_as_http_client_sends_it() -> None:
    sent = []
    for method, body, headers in (
        ("GET", None, {}),
        ("POST", None, {}),  # a method that carries a body says its length, 0
        ("POST", b'{"a": 1}', {"Content-Type": "application/json"}),
    ):
        end, received = _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1 << 20)
        connection = _Pair(end)
        connection.request(method, "/v1.41/containers/create?name=x", body, headers)
        connection.getresponse().read()
        connection.close()
        sent.append(received[0])
    head = b"/v1.41/containers/create?name=x HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n"
    assert sent == [
        b"GET " + head + b"\r\n",
        b"POST " + head + b"Content-Length: 0\r\n\r\n",
        b"POST " + head + b'Content-Length: 8\r\nContent-Type: application/json\r\n\r\n{"a": 1}',
    ]


@pytest.mark.parametrize(
    ("host", "port", "header"),
    [("localhost", None, "localhost"), ("10.0.0.1", 2375, "10.0.0.1:2375"), ("::1", 2375, "[::1]:2375"),
     ("engine.example", 80, "engine.example"), ("hö.example", 2375, "xn--h-1ga.example:2375")],
)  # fmt: skip
def test_the_host_header_names_the_port_unless_it_is_the_default(
    host: str, port: int | None, header: str
) -> None:
    end, received = _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1 << 20)
    connection = _Pair(end)
    connection.host, connection.port = host, port
    connection.request("GET", "/_ping")
    connection.getresponse()
    connection.close()
    assert f"\r\nHost: {header}\r\n".encode() in received[0]


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/containers/x HTTP/1.1\r\nX-Injected: 1\r\n", {}),
        ("GET", "/a b", {}),
        ("GET", "/é", {}),
        ("GET\r\n", "/", {}),
        ("GET", "/", {"X-Registry-Auth": "abc\r\nX-Injected: 1"}),
        ("GET", "/", {"X Bad": "1"}),
        ("GET", "/", {"X-Name": "é"}),
    ],
)
def test_a_request_that_is_not_well_formed_is_refused_before_anything_is_sent(
    method: str, target: str, headers: dict[str, str]
) -> None:
    end, received = _serve(b"", 1)
    connection = _Pair(end)
    with pytest.raises(ValueError, match="not an HTTP"):
        connection.request(method, target, None, headers)
    end.shutdown(socket.SHUT_WR)  # the engine's side sees the end of a request that never came
    connection.close()
    for _ in range(100):
        if received:
            break
        threading.Event().wait(0.01)
    assert received == [b""]


OK = b"HTTP/1.1 200 OK\r\n"
REFUSED = {
    "nothing": (b"", "closed without a reply"),
    "HTTP/0.9, no status line": (b"<html>hello</html>\r\n", "not an HTTP/1.1 status line"),
    "another version": (b"HTTP/2.0 200 OK\r\n\r\n", "not an HTTP/1.1 status line"),
    "a status that is not three digits": (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.1 status line"),
    "100 Continue": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", r"interim reply \(100\)"),
    "101 Switching Protocols": (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", r"interim reply \(101\)"),
    "a folded header": (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\n\r\n", "folded"),
    "a header without a colon": (b"HTTP/1.1 200 OK\r\nnot a header\r\n\r\n", "not a header line"),
    "a space before the colon": (b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", "not a header line"),
    "headers cut short": (b"HTTP/1.1 200 OK\r\nContent-Len", "ended inside its headers"),
    "another transfer coding": (OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
    "two transfer codings": (OK + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", "Trans"),
    "a length not a number": (b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", "not one Content-Length"),
    "a negative length": (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "not one Content-Length"),
    "two lengths": (OK + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "not one Content-Length"),
    "a line too long": (b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n", "longer than 65536"),
    "too many headers": (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", "more than 100 header"),
}  # fmt: skip


@pytest.mark.parametrize(("raw", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_reply_this_client_does_not_read_is_refused_in_one_line(raw: bytes, message: str) -> None:
    with pytest.raises(http1.BadReply, match=message) as refused:
        ours(raw)
    assert "\n" not in str(refused.value)


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
BODY_REFUSED = {
    "a length cut short": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", "ended 5 bytes short"),
    "a chunk size that is not hex": (CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", "not a chunk's size"),
    "a chunk size too long": (CHUNKED + b"1" * 17 + b"\r\n", "not a chunk's size"),
    "a chunk longer than its size": (CHUNKED + b"3\r\nhello\r\n0\r\n\r\n", "longer than its size"),
    "a chunk cut short": (CHUNKED + b"a\r\nhello", "ended 5 bytes short"),
    "no last chunk": (CHUNKED + b"5\r\nhello\r\n", "ended before its last chunk"),
    "trailers cut short": (CHUNKED + b"0\r\nTrailer: 1\r\n", "ended inside its trailers"),
    "trailers without end": (CHUNKED + b"0\r\n" + b"T: 1\r\n" * 101, "more than 100 trailer"),
}


@pytest.mark.parametrize(("raw", "message"), BODY_REFUSED.values(), ids=BODY_REFUSED.keys())
@pytest.mark.parametrize("piece", [1, 1 << 20])
def test_a_body_framed_wrongly_is_refused_in_one_line(raw: bytes, message: str, piece: int) -> None:
    with pytest.raises(http1.BadReply, match=message):
        ours(raw, piece)


def test_spaces_around_a_value_are_not_the_value() -> None:
    """RFC 9110 5.5: the spaces and tabs around a field's value are not part of it (http.client keeps
    those after it)."""
    raw = b"HTTP/1.1 200 OK\r\nAPI-Version:   1.44 \t\r\nContent-Length: 0\r\n\r\n"
    assert ours(raw)[2]["API-Version"] == "1.44"


def test_a_length_given_twice_alike_is_one_length() -> None:
    """RFC 9112 6.3: the same length repeated is that length (http.client reads such a body to the
    connection's end instead)."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello, and more"
    assert ours(raw)[3] == b"hello"


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_tcp_connects_to_its_host_and_port(listening: socket.socket) -> None:
    port = listening.getsockname()[1]

    def engine() -> None:
        accepted, _ = listening.accept()
        with accepted:
            accepted.recv(65536)
            accepted.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    threading.Thread(target=engine, daemon=True).start()
    connection = http1.Connection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/_ping")
    assert connection.getresponse().read() == b"OK"
    connection.close()


def test_a_refused_reply_leaves_no_socket_open() -> None:
    """The transport's socket closes with the connection even when its reply was refused: an ssh
    engine's `docker system dial-stdio` ends only then."""
    end, theirs = socket.socketpair()
    with theirs:
        connection = _Pair(end)
        connection.request("GET", "/_ping")
        theirs.recv(65536)
        theirs.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        with pytest.raises(http1.BadReply) as refused:  # kept, as a caller's error keeps it as context
            connection.getresponse()
        connection.close()
        theirs.settimeout(5)
        assert theirs.recv(1) == b"" and refused.value
