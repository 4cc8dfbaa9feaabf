"""HTTP/1.1 as the engine's API needs it: one request and its reply on a connection the transport
opens (`Connection.connect`), the reply's body read as it arrives.

qimg asks the engine something on every command. `http.client` (with the `email` package it parses
headers with, and `ssl`, which it imports whether or not TLS is used) cost every `qimg run --local`
11 ms of imports; this is the part of it the engine's API uses. What http.client does that this
does not, each refused in one line (`BadReply`, `ValueError` for a request) or not needed here:
- a connection kept for a next request: each request has its own, as `engine_api` always did;
- interim replies (`100 Continue`, `101 Switching Protocols`): qimg never asks for one; refused;
- replies without a status line (HTTP/0.9), or in a version other than HTTP/1.0 and HTTP/1.1: refused;
- header lines folded onto the next (obsolete since RFC 7230): refused;
- a `Transfer-Encoding` other than `chunked` alone, a `Content-Length` that is not one number (http.client
  reads such a body to the connection's end): refused;
- proxies and CONNECT tunnels, `Expect: 100-continue`, a body sent in pieces (a file, an iterable):
  the engine is reached directly, and a body is bytes;
- non-ASCII in a request line or header (http.client sends headers as Latin-1): refused.
Its limits are kept: a status, header or chunk-size line of at most 64 KiB, at most 100 header lines.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping

MAX_LINE = 65536
MAX_HEADERS = 100
_METHODS_WITH_BODY = frozenset({"PATCH", "POST", "PUT"})  # sent Content-Length: 0 when there is none
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a method or a header's name (RFC 9110)
_TARGET = re.compile(r"[!-~]+")  # a request target: visible ASCII, no space
_VALUE = re.compile(r"[\t -~]*")  # a header's value: visible ASCII, spaces and tabs
_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([^\r\n]*))?\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")


class BadReply(Exception):
    """A reply this client does not read as HTTP/1.1 (or one cut short): what is wrong with it."""


class Connection:
    """One request and its reply. `connect` opens the socket: tcp here, the transports' own in theirs."""

    default_port = 80

    def __init__(self, host: str, port: int | None = None, timeout: float | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.reply: Response | None = None

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port or self.default_port), self.timeout)

    def request(
        self, method: str, target: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Connect, and send the request (ValueError, before anything is sent, for one that is not
        well formed)."""
        given = dict(headers or {})
        if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
            raise ValueError(f"not an HTTP request line: {method[:20]!r} {target[:60]!r}")
        for name, value in given.items():
            if not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
                raise ValueError(f"not an HTTP header: {name[:40]!r}")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header()}", "Accept-Encoding: identity"]
        if "content-length" not in {name.lower() for name in given} and (
            body is not None or method in _METHODS_WITH_BODY
        ):
            lines.append(f"Content-Length: {len(body or b'')}")
        lines += [f"{name}: {value}" for name, value in given.items()]
        # One send: a request's head and body in two would wait on the peer's delayed ACK over tcp.
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")
        if self.sock is None:
            self.connect()
        self.send(message)

    def send(self, data: bytes) -> None:
        assert self.sock is not None, "send after connect"
        self.sock.sendall(data)

    def getresponse(self) -> Response:
        """The reply's status line and headers, read; its body is read from the Response."""
        assert self.sock is not None, "a reply before a request"
        self.reply = Response(self.sock)
        return self.reply

    def failure(self, error: OSError | BadReply) -> str:
        """What to say of a request or reply that failed with `error` (a transport says its own words)."""
        return str(error)

    def close(self) -> None:
        if self.reply is not None:
            self.reply.close()
        if self.sock is not None:
            self.sock.close()

    def _host_header(self) -> str:
        host = self.host if self.host.isascii() else self.host.encode("idna").decode()  # as http.client
        name = f"[{host}]" if ":" in host else host
        return name if self.port in (None, self.default_port) else f"{name}:{self.port}"


class Response:
    """A reply: `status`, `reason`, `getheader`, and its body through `read` and `read1` (its framing
    undone: a length, chunks, or the connection's end)."""

    status: int
    reason: str
    _headers: dict[str, list[str]]  # by lower-case name
    _chunked: bool
    _left: int | None  # of the body or of its chunk; None: until the connection's end
    _done: bool

    def __init__(self, sock: socket.socket) -> None:
        self._sock, self._file = sock, sock.makefile("rb")
        try:
            self._head()
        except BaseException:  # the socket is closed only once this reader of it is
            self._file.close()
            raise

    def _head(self) -> None:
        status_line = self._line("the status line")
        if not status_line:
            raise BadReply("the connection closed without a reply")
        matched = _STATUS.fullmatch(status_line)
        if matched is None:
            raise BadReply(f"not an HTTP/1.1 status line: {status_line[:40]!r}")
        self.status = int(matched.group(2))
        self.reason = (matched.group(3) or b"").decode("latin-1")
        if self.status < 200:
            raise BadReply(f"an interim reply ({self.status}), which qimg never asks for")
        self._headers = self._header_lines()
        self._chunked, self._left = self._framing()
        self._done = self.status in (204, 304) or (self._left == 0 and not self._chunked)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        values = self._headers.get(name.lower())
        return ", ".join(values) if values else default

    def settimeout(self, seconds: float | None) -> None:
        """How long a read of the body may wait for the engine (None: as long as it takes)."""
        self._sock.settimeout(seconds)

    def read(self, amount: int | None = None) -> bytes:
        """At most `amount` bytes of the body (all of it when None); fewer only at its end."""
        parts, wanted = [], amount if amount is not None else -1
        while wanted != 0 and (part := self.read1(wanted if wanted > 0 else 1 << 16)):
            parts.append(part)
            wanted = max(wanted - len(part), 0) if wanted > 0 else -1
        return b"".join(parts)

    def read1(self, amount: int) -> bytes:
        """What the body has ready, at most `amount` bytes (one read of the socket at most); b"" at
        its end. BadReply for a body cut short or framed wrongly."""
        if self._done or amount <= 0:
            return b""
        if self._chunked and self._left == 0:
            self._left = self._chunk_size()
            if self._left == 0:
                self._trailers()
                self._done = True
                return b""
        if self._left is None:  # until the connection's end
            data = self._file.read1(amount)
            self._done = not data
            return data
        data = self._file.read1(min(amount, self._left))
        if not data:
            raise BadReply(f"the reply ended {self._left} bytes short")
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                if self._line("a chunk's end").strip(b"\r\n"):
                    raise BadReply("a chunk longer than its size")
            else:
                self._done = True
        return data

    def close(self) -> None:
        self._file.close()

    def _line(self, what: str) -> bytes:
        line = self._file.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadReply(f"{what} is longer than {MAX_LINE} bytes")
        return line

    def _header_lines(self) -> dict[str, list[str]]:
        headers: dict[str, list[str]] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line("a header line")
            if line in (b"\r\n", b"\n"):
                return headers
            if not line.endswith(b"\n"):
                raise BadReply("the reply ended inside its headers")
            if line[:1] in (b" ", b"\t"):
                raise BadReply("a header line folded onto the next (obsolete)")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                raise BadReply(f"not a header line: {line[:40]!r}")
            headers.setdefault(name.lower(), []).append(value.strip(" \t\r\n"))
        raise BadReply(f"more than {MAX_HEADERS} header lines")

    def _framing(self) -> tuple[bool, int | None]:
        """Whether the body comes in chunks, and its length (None: until the connection's end)."""
        encoding = self._headers.get("transfer-encoding")
        if encoding is not None:
            if [value.lower() for value in encoding] != ["chunked"]:
                raise BadReply(f"a Transfer-Encoding qimg does not read: {', '.join(encoding)[:40]!r}")
            return True, 0
        lengths = {
            part.strip() for value in self._headers.get("content-length", []) for part in value.split(",")
        }
        if not lengths:
            return False, None
        if len(lengths) > 1 or not all(length.isdigit() and length.isascii() for length in lengths):
            raise BadReply(f"not one Content-Length: {', '.join(sorted(lengths))[:40]!r}")
        return False, int(lengths.pop())

    def _chunk_size(self) -> int:
        line = self._line("a chunk's size")
        matched = _CHUNK_SIZE.fullmatch(line)
        if matched is None:
            raise BadReply(
                f"not a chunk's size: {line[:40]!r}" if line else "the reply ended before its last chunk"
            )
        return int(matched.group(1), 16)

    def _trailers(self) -> None:
        """The trailer lines after the last chunk, read and left (as http.client leaves them)."""
        for _ in range(MAX_HEADERS + 1):
            line = self._line("a trailer line")
            if line in (b"\r\n", b"\n"):
                return
            if not line:
                raise BadReply("the reply ended inside its trailers")
        raise BadReply(f"more than {MAX_HEADERS} trailer lines")
