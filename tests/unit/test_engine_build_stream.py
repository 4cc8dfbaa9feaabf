"""`Engine.build`, the classic builder's call on the engine's API: the context sent as a tar, the
engine's stream of JSON messages read as it comes, whatever its cuts, and what a broken or hostile
engine sends said in one line."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from qimg.builder.build import BuildOptions, build_image
from qimg.builder.spec import ImageSpec
from qimg.engine_api import Engine, EngineError
from qimg.engine_transport import EngineTarget
from qimg.errors import BuildFailed
from tests.fakes.http import UnixHTTPServer, serving

PING = b"HTTP/1.1 200 OK\r\nAPI-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
IMAGE = {"Id": "sha256:" + "ab" * 32, "Size": 1234}


class BuildEngine:
    """What the fake engine is to answer /build with (each bytes a chunk, written apart), what it got."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.status = b"200 OK"
        self.query = ""
        self.context: dict[str, tuple[int, bytes]] = {}  # name: (mode, content)


@pytest.fixture
def build_engine(tmp_path: Path) -> Iterator[tuple[Engine, BuildEngine]]:
    answer = BuildEngine()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/_ping":
                self.wfile.write(PING)
            else:  # the built image's inspection
                body = json.dumps(IMAGE).encode()
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

        def do_POST(self) -> None:
            answer.query = self.path
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with tarfile.open(fileobj=io.BytesIO(body or bytes(1024))) as tar:  # b"": an empty archive
                for member in tar.getmembers():
                    content = tar.extractfile(member)
                    answer.context[member.name] = (member.mode, content.read() if content else b"")
            if answer.status != b"200 OK":
                message = json.dumps({"message": "Cannot locate specified Dockerfile"}).encode()
                self.wfile.write(
                    b"HTTP/1.1 " + answer.status + b"\r\nContent-Length: %d\r\n\r\n" % len(message) + message
                )
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for chunk in answer.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(0.002)  # each its own read
            self.wfile.write(b"0\r\n\r\n")

        def address_string(self) -> str:
            return "engine-test"

    path = tmp_path / "engine.sock"
    with serving(UnixHTTPServer(str(path), Handler)):
        yield Engine(EngineTarget("test", f"unix://{path}")), answer


def cut(messages: list[dict[str, Any]], size: int) -> list[bytes]:
    """The messages as the engine writes them (one per line), cut every `size` bytes."""
    data = b"".join(json.dumps(message, ensure_ascii=False).encode() + b"\r\n" for message in messages)
    return [data[start : start + size] for start in range(0, len(data), size)]


MESSAGES: list[dict[str, Any]] = [
    {"stream": "Step 1/2 : FROM debian:bookworm-slim\n"},
    {"stream": " ---> 76cecfb970b5\n"},
    {"stream": "Step 2/2 : RUN echo été\n"},  # "é" is two bytes: a cut falls inside one
    {"stream": "été\n"},
    {"aux": {"ID": IMAGE["Id"]}},
    {"stream": "Successfully built 76cecfb970b5\n"},
]


@pytest.mark.parametrize("size", [1, 5, 29, 4096])
def test_messages_are_read_whatever_the_cuts(build_engine: tuple[Engine, BuildEngine], size: int) -> None:
    engine, answer = build_engine
    answer.chunks = cut(MESSAGES, size)
    got: list[Any] = []
    engine.build(b"", {"t": "x"}, got.append)
    assert got == MESSAGES


def test_a_build_sends_the_context_and_reads_its_steps(build_engine: tuple[Engine, BuildEngine]) -> None:
    engine, answer = build_engine
    answer.chunks = cut(MESSAGES, 7)
    steps: list[str] = []
    output: list[str] = []
    built = build_image(
        engine,
        ImageSpec.create(user="alice"),
        "qimgtest/x:1",
        BuildOptions(on_step=steps.append, on_output=output.append),
    )
    assert built.id == IMAGE["Id"] and built.size == 1234
    assert steps == ["Step 1/2 : FROM debian:bookworm-slim", "Step 2/2 : RUN echo été"]
    assert output == ["été"]
    assert (
        "t=qimgtest%2Fx%3A1" in answer.query and "forcerm=1" in answer.query and "nocache=0" in answer.query
    )
    assert sorted(answer.context) == [
        "Dockerfile",
        "qimg-idle.sh",
        "qimg-setup.sh",
        "qimg-start.sh",
        "sshd-qimg.conf",
    ]
    assert answer.context["qimg-start.sh"][0] == 0o755 and answer.context["Dockerfile"][0] == 0o644


def test_a_stream_cut_inside_a_message_is_one_line(build_engine: tuple[Engine, BuildEngine]) -> None:
    engine, answer = build_engine
    answer.chunks = [b'{"stream": "Step 1/2 : FROM x\\n"}\r\n{"stream": "half']
    with pytest.raises(EngineError, match="ended inside a message"):
        engine.build(b"", {}, lambda message: None)


def test_an_error_message_fails_the_build_at_its_step(build_engine: tuple[Engine, BuildEngine]) -> None:
    engine, answer = build_engine
    answer.chunks = cut(
        [MESSAGES[0], MESSAGES[2], {"errorDetail": {"code": 100, "message": "x"}, "error": "returned 100"}], 9
    )
    with pytest.raises(BuildFailed, match=r"build failed at step 2/2 \(RUN echo été\): exit code 100"):
        build_image(engine, ImageSpec.create(user="alice"), "qimgtest/x:1")


def test_a_refused_build_says_the_engines_reason(build_engine: tuple[Engine, BuildEngine]) -> None:
    engine, answer = build_engine
    answer.status = b"500 Internal Server Error"
    with pytest.raises(BuildFailed, match="before its first step: Cannot locate specified Dockerfile"):
        build_image(engine, ImageSpec.create(user="alice"), "qimgtest/x:1")
