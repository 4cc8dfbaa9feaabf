"""Local servers for the tests' small services and stand-in engines: `serving`, any socketserver
answering from a thread of its own for a block; `UnixHTTPServer`, one on a unix socket (an engine's);
`http_server`, one on 127.0.0.1 and a free port whose GETs one function of the test's handles (a token
service, a registry that redirects)."""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

Server = TypeVar("Server", bound=socketserver.BaseServer)


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threading server on a unix socket, as an engine listens (its handlers answer HTTP)."""

    daemon_threads = True


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """The server answering from a thread of its own while the block runs; shut down and closed after."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def http_server(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A local HTTP server whose GETs `answer` handles: its host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        yield f"127.0.0.1:{server.server_address[1]}"


def reply_json(request: BaseHTTPRequestHandler, status: int, document: dict[str, object]) -> None:
    body = json.dumps(document).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)
