"""The launcher's own client of the Docker engine's API: what it sends and how it reads replies."""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from qimg import engine_api
from qimg.engine_api import (
    MAX_API,
    Engine,
    EngineError,
    EngineTooOld,
    container_config,
    demultiplexed,
    demultiplexed_tail,
    labels_of,
)
from qimg.engine_transport import EngineTarget
from qimg.errors import BackendError, DockerUnavailable, UsageError
from qimg.launcher.backends.local import INSTANCE_LABEL, TASK_LABEL, LocalBackend
from qimg.launcher.containers import published_ssh
from tests.fakes.http import UnixHTTPServer, serving
from tests.helpers import assert_one_line_error, run_qimg


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
    "host",
    [
        "ssh://user@box/path",
        "ssh://-oProxyCommand=x",
        "npipe:////./pipe/docker_engine",
        "tcp://nohost",
        "unix://",
    ],
)
def test_engines_out_of_reach_are_refused_in_one_line(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(UsageError, match=r"DOCKER_HOST=.*unset it to use the local engine"):
        Engine.from_env()


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ((), "ca.pem nor cert.pem nor key.pem"),
        (("ca.pem", "cert.pem"), "key.pem"),
        (("cert.pem", "key.pem"), "ca.pem"),
    ],
)
def test_tls_without_its_files_is_one_line(
    present: tuple[str, ...], missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in present:
        (tmp_path / name).write_text("")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    with pytest.raises(
        UsageError, match=f"DOCKER_CERT_PATH={tmp_path} has no {missing}: put the engine's CA"
    ):
        Engine.from_env()


def test_tls_files_that_are_not_certificates_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("not a certificate")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    with pytest.raises(UsageError, match=f"{tmp_path}/ca.pem: not a CA certificate"):
        Engine.from_env()


def test_tls_that_verifies_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS", "1")
    with pytest.raises(
        UsageError, match="qimg always verifies the engine's certificate: set DOCKER_TLS_VERIFY=1"
    ):
        Engine.from_env()


@pytest.mark.parametrize(
    ("host", "here"),
    [
        ("unix:///var/run/docker.sock", True), ("tcp://127.0.0.1:2376", True), ("ssh://me@localhost", True),
        ("tcp://[::1]:2375", True), ("ssh://me@gpu-box:2222", False), ("tcp://10.0.0.7:2376", False),
    ],
)  # fmt: skip
def test_which_engines_publish_ports_this_machine_reaches(host: str, here: bool) -> None:
    target = EngineTarget("DOCKER_HOST", host)
    assert target.on_this_machine is here
    if here:
        target.require_ports_here("qimg check")
    else:
        with pytest.raises(
            UsageError, match=r"qimg check logs in to the container's ssh port, which DOCKER_HOST="
        ):
            target.require_ports_here("qimg check")


def test_an_engine_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DockerUnavailable, match=r"does not answer at unix://.*: start it") as error:
        Engine(EngineTarget("test", f"unix://{tmp_path}/docker.sock")).ping()
    assert "\n" not in str(error.value)


def json_reply(document: object) -> bytes:
    body = json.dumps(document).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


PING_141 = b"HTTP/1.1 200 OK\r\nAPI-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
requested: list[str] = []  # the paths the odd engine was asked for, in order


@pytest.fixture
def odd_engine(tmp_path: Path) -> Iterator[tuple[Engine, dict[str, bytes]]]:
    """An engine on a unix socket that answers each path with the raw reply given for it (status line
    and all): what a broken or hostile engine could send."""
    replies: dict[str, bytes] = {"/_ping": PING_141}
    requested.clear()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = re.sub(r"^/v1\.\d+/", "/", self.path.split("?")[0])
            requested.append(self.path)
            self.wfile.write(replies.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n"))
            self.wfile.flush()

        def address_string(self) -> str:  # a unix socket has no client address
            return "engine-test"

    path = tmp_path / "engine.sock"
    with serving(UnixHTTPServer(str(path), Handler)):
        yield Engine(EngineTarget("test", f"unix://{path}")), replies


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


@pytest.fixture(autouse=True)
def _negotiate_again() -> Iterator[None]:
    """Each test's engine negotiates afresh (qimg negotiates once per process, and tests share one)."""
    engine_api.negotiated.clear()
    yield
    engine_api.negotiated.clear()


def test_every_call_is_versioned_after_one_ping(odd_engine: tuple[Engine, dict[str, bytes]]) -> None:
    engine, replies = odd_engine
    replies["/containers/json"] = json_reply([])
    engine.containers(["a=b"])
    engine.containers(["a=b"])
    assert [path.split("?")[0] for path in requested] == ["/_ping", *["/v1.41/containers/json"] * 2]


def test_a_newer_engine_is_asked_in_qimgs_newest_version(odd_engine: tuple[Engine, dict[str, bytes]]) -> None:
    engine, replies = odd_engine
    replies["/_ping"] = PING_141.replace(b"1.41", b"1.52")
    assert engine.api_version() == f"1.{MAX_API[1]}"


def test_an_engine_below_the_minimum_is_refused(odd_engine: tuple[Engine, dict[str, bytes]]) -> None:
    engine, replies = odd_engine
    replies["/_ping"] = PING_141.replace(b"1.41", b"1.24")
    with pytest.raises(EngineTooOld, match=r"speaks Docker API 1\.24; qimg needs 1\.41 or later: upgrade"):
        engine.containers(["a=b"])
    assert requested == ["/_ping"]  # nothing else asked


@pytest.mark.parametrize(
    ("given", "expected"), [("1.43", "1.43"), ("1.9", None), ("latest", None), ("2.0", None)]
)
def test_docker_api_version_comes_first(
    odd_engine: tuple[Engine, dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
    given: str,
    expected: str | None,
) -> None:
    engine, _ = odd_engine
    monkeypatch.setenv("DOCKER_API_VERSION", given)
    if expected is None:
        with pytest.raises(UsageError, match=f"DOCKER_API_VERSION={given}: "):
            engine.api_version()
    else:
        assert engine.api_version() == expected
    assert requested == []  # the engine is not asked


def test_an_old_engine_is_one_line_from_the_cli(tmp_path: Path) -> None:
    """The installed qimg in front of an engine that speaks API 1.24: exit 1, one line naming it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.wfile.write(PING_141.replace(b"1.41", b"1.24"))

        def address_string(self) -> str:
            return "engine-test"

    path = tmp_path / "old.sock"
    with serving(UnixHTTPServer(str(path), Handler)):
        for command in (("ls", "--local"), ("check", "qimg/alice:latest")):
            result = run_qimg(*command, env={"DOCKER_HOST": f"unix://{path}"})
            assert_one_line_error(result, 1, f"DOCKER_HOST=unix://{path} speaks Docker API 1.24", "upgrade")
