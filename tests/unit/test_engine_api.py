"""The launcher's own client of the Docker engine's API: what it sends and how it reads replies."""

from __future__ import annotations

import io
import json
import socketserver
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from qimg.engine_api import (
    MAX_API,
    MIN_API,
    Engine,
    EngineError,
    api_version,
    container_config,
    demultiplexed,
    demultiplexed_tail,
    labels_of,
)
from qimg.engine_transport import EngineTarget
from qimg.errors import BackendError, DockerUnavailable, UsageError
from qimg.launcher.backends.local import INSTANCE_LABEL, TASK_LABEL, LocalBackend
from qimg.launcher.containers import published_ssh


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_a_multiplexed_stream_is_read_frame_by_frame() -> None:
    data = frame(1, b"qimg-host-key: ssh-ed25519 AAAA\n") + frame(2, b"") + frame(1, b"\x00\x01 binary\n")
    assert demultiplexed(data) == b"qimg-host-key: ssh-ed25519 AAAA\n\x00\x01 binary\n"
    # A frame cut short (the engine went away mid-reply) yields what arrived, never garbage headers.
    assert demultiplexed(frame(1, b"whole\n") + frame(1, b"cut short")[:12]) == b"whole\n" + b"cut "


class _Chunks(io.BytesIO):
    """A reply body that hands out at most a few bytes per read, as a socket may."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(min(7, size if size is not None and size >= 0 else 7))


def test_the_tail_of_a_stream_is_its_last_bytes_from_a_line_start() -> None:
    """[F7] What `logs` keeps: the end of the payload, from a whole line, whatever the frames' cuts."""
    lines = [f"line {n} {'x' * (n % 37)}\n".encode() for n in range(400)]
    data = b"".join(frame(1 + n % 2, line) for n, line in enumerate(lines))
    whole = demultiplexed(data)
    assert demultiplexed_tail(io.BytesIO(data), 1 << 20) == whole
    tail = demultiplexed_tail(_Chunks(data), 1000)
    assert whole.endswith(tail) and 900 < len(tail) <= 1000 and whole[-len(tail) - 1 :][:1] == b"\n"
    # One frame far larger than what is kept (a line of megabytes): only its end is held.
    huge = frame(1, b"a" * (3 << 20) + b"\nlast line\n")
    assert demultiplexed_tail(io.BytesIO(huge), 1 << 10) == b"last line\n"
    assert (
        demultiplexed_tail(io.BytesIO(frame(1, b"whole\n") + frame(1, b"cut short")[:12]), 100)
        == b"whole\ncut "
    )


def test_the_command_is_split_as_a_shell_would_and_empty_means_the_images() -> None:
    config = container_config("img:1", "/usr/local/sbin/qimg-start --flag 'two words'", {"A": "x=y"})
    assert config == {
        "Image": "img:1",
        "Env": ["A=x=y"],
        "Cmd": ["/usr/local/sbin/qimg-start", "--flag", "two words"],
    }
    assert "Cmd" not in container_config("img:1", "", {})


@pytest.mark.parametrize(
    "host", ["ssh://user@box", "npipe:////./pipe/docker_engine", "tcp://nohost", "unix://"]
)
def test_engines_out_of_reach_are_refused_in_one_line(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(UsageError, match=r"DOCKER_HOST=.*unset it to use the local engine"):
        Engine.from_env()


def test_tls_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(UsageError, match="DOCKER_TLS_VERIFY"):
        Engine.from_env()


def test_an_engine_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DockerUnavailable, match=r"does not answer at unix://.*: start it") as error:
        Engine(EngineTarget("test", f"unix://{tmp_path}/docker.sock")).ping()
    assert "\n" not in str(error.value)


def json_reply(document: object) -> bytes:
    body = json.dumps(document).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def odd_engine(tmp_path: Path) -> Iterator[tuple[Engine, dict[str, bytes]]]:
    """An engine on a unix socket that answers each path with the raw reply given for it (status line
    and all): what a broken or hostile engine could send."""
    replies: dict[str, bytes] = {
        "/_ping": b"HTTP/1.1 200 OK\r\nAPI-Version: 1.45\r\nContent-Length: 2\r\n\r\nOK"
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path != "/_ping":  # any other request unversioned, or at another version, is not found
                versioned = f"/v{api_version(engine.target)}/"
                path = path[len(versioned) - 1 :] if path.startswith(versioned) else "unversioned"
            self.wfile.write(replies.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n"))
            self.wfile.flush()

        def address_string(self) -> str:  # a unix socket has no client address
            return "engine-test"

    path = tmp_path / "engine.sock"
    server = _UnixHTTPServer(str(path), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    engine = Engine(EngineTarget("test", f"unix://{path}"))
    try:
        yield engine, replies
    finally:
        server.shutdown()
        server.server_close()


def test_odd_replies_from_the_engine_are_one_line(odd_engine: tuple[Engine, dict[str, bytes]]) -> None:
    engine, replies = odd_engine
    replies["/containers/json"] = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!"
    with pytest.raises(EngineError, match="not JSON"):
        engine.containers(["a=b"])
    replies["/containers/json"] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{"  # cut short
    with pytest.raises(DockerUnavailable, match="does not answer"):
        engine.containers(["a=b"])
    replies["/containers/json"] = b'HTTP/1.1 500 Oops\r\nContent-Length: 25\r\n\r\n{"message": "disk full"}\n'
    with pytest.raises(EngineError, match="the Docker engine: disk full") as error:
        engine.containers(["a=b"])
    assert error.value.status == 500


def test_a_container_described_oddly_is_one_line(odd_engine: tuple[Engine, dict[str, bytes]]) -> None:
    """A container whose inspection lacks what a view needs: one line naming the task, no traceback."""
    engine, replies = odd_engine
    replies["/containers/json"] = json_reply([{"Id": "c1c1c1c1c1c1"}])
    replies["/containers/c1c1c1c1c1c1/json"] = json_reply(
        {"Id": "c1c1c1c1c1c1", "Config": {"Labels": {TASK_LABEL: "t1", INSTANCE_LABEL: "0"}}}
    )
    with pytest.raises(BackendError, match="the local engine described task t1 in a way qimg cannot read"):
        LocalBackend(engine).view("t1")
    with pytest.raises(EngineError, match="did not say where it published"):
        published_ssh({"NetworkSettings": {"Ports": {"22/tcp": None}}})


def test_ids_from_the_engine_never_reach_a_path_unchecked(
    odd_engine: tuple[Engine, dict[str, bytes]],
) -> None:
    engine, replies = odd_engine
    replies["/containers/json"] = json_reply([{"Id": "../../images/debian/json"}])
    with pytest.raises(EngineError, match="an id that is not one"):
        engine.containers(["a=b"])
    replies["/containers/json"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    with pytest.raises(EngineError, match="not a list"):
        engine.containers(["a=b"])
    # Refused before any request: the same call to an engine that is not there says the id, not the engine.
    with pytest.raises(EngineError, match="an id that is not one"):
        Engine(EngineTarget("test", "unix:///nonexistent/docker.sock")).inspect("../secrets")


def test_labels_are_read_as_text_only() -> None:
    assert labels_of({"Config": {"Labels": {"a": "1", "b": 2, "c": None}}}) == {"a": "1"}
    odd: object
    for odd in (
        None,
        [],
        "x",
        {"Config": None},
        {"Config": {"Labels": ["a=1"]}},
        {"Config": {"Labels": "a"}},
    ):
        assert labels_of(odd) == {}


def ping_reply(version: str) -> bytes:
    return b"HTTP/1.1 200 OK\r\nAPI-Version: %s\r\nContent-Length: 2\r\n\r\nOK" % version.encode()


@pytest.mark.parametrize(("offered", "used"), [("1.41", "1.41"), ("1.45", "1.45"), ("1.51", "1.47")])
def test_the_api_version_is_the_engines_capped_at_qimgs(
    odd_engine: tuple[Engine, dict[str, bytes]], offered: str, used: str
) -> None:
    engine, replies = odd_engine
    replies["/_ping"] = ping_reply(offered)
    replies["/containers/json"] = json_reply([])
    assert engine.containers(["a=b"]) == []
    assert api_version(engine.target) == used == f"{MAX_API[0]}.{min(int(offered[2:]), MAX_API[1])}"


def test_the_version_is_negotiated_once_per_command(odd_engine: tuple[Engine, dict[str, bytes]]) -> None:
    engine, replies = odd_engine
    replies["/containers/json"] = json_reply([])
    assert engine.containers(["a=b"]) == []
    replies["/_ping"] = ping_reply("1.20")  # asked again, this would be refused
    assert engine.containers(["a=b"]) == []
    assert Engine(engine.target).containers(["a=b"]) == []  # another Engine of the same command
    assert api_version(engine.target) == "1.45"


@pytest.mark.parametrize("said", ["1.40", "1.12"])
def test_an_engine_below_the_minimum_is_one_line(
    odd_engine: tuple[Engine, dict[str, bytes]], said: str
) -> None:
    engine, replies = odd_engine
    replies["/_ping"] = ping_reply(said)
    with pytest.raises(DockerUnavailable) as error:
        engine.ping()
    message = str(error.value)
    assert "test (unix://" in message and f"speaks API {said}, qimg needs 1.{MIN_API[1]} or later" in message
    assert "upgrade it" in message and "\n" not in message


@pytest.mark.parametrize("said", ["", "2.0", "1.41; rm -rf", "1." + "9" * 50])
def test_a_ping_without_a_version_is_one_line(odd_engine: tuple[Engine, dict[str, bytes]], said: str) -> None:
    engine, replies = odd_engine
    header = f"API-Version: {said}\r\n" if said else ""
    replies["/_ping"] = f"HTTP/1.1 200 OK\r\n{header}Content-Length: 2\r\n\r\nOK".encode()
    with pytest.raises(DockerUnavailable, match="answers /_ping without an API version") as error:
        engine.ping()
    assert "\n" not in str(error.value)


def test_docker_api_version_comes_first(
    odd_engine: tuple[Engine, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, replies = odd_engine
    replies["/_ping"] = ping_reply("1.30")  # never asked: the user's version is used as is
    monkeypatch.setenv("DOCKER_API_VERSION", "1.43")
    replies["/containers/json"] = json_reply([])
    assert engine.containers(["a=b"]) == []
    assert api_version(engine.target) == "1.43"


@pytest.mark.parametrize("forced", ["latest", "1.40", "v1.44", "1.44.1", "2.1"])
def test_a_docker_api_version_qimg_cannot_speak_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, forced: str
) -> None:
    monkeypatch.setenv("DOCKER_API_VERSION", forced)
    with pytest.raises(UsageError, match=f"DOCKER_API_VERSION={forced}: not an API version qimg speaks"):
        Engine(EngineTarget("test", "unix:///nonexistent/docker.sock")).ping()
