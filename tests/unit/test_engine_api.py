"""The launcher's own client of the Docker engine's API: what it sends and how it reads replies."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from qimg.engine_api import Engine, container_config, demultiplexed
from qimg.errors import DockerUnavailable, UsageError


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_a_multiplexed_stream_is_read_frame_by_frame() -> None:
    data = frame(1, b"qimg-host-key: ssh-ed25519 AAAA\n") + frame(2, b"") + frame(1, b"\x00\x01 binary\n")
    assert demultiplexed(data) == b"qimg-host-key: ssh-ed25519 AAAA\n\x00\x01 binary\n"
    # A frame cut short (the engine went away mid-reply) yields what arrived, never garbage headers.
    assert demultiplexed(frame(1, b"whole\n") + frame(1, b"cut short")[:12]) == b"whole\n" + b"cut "


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
        Engine(f"unix://{tmp_path}/docker.sock").ping()
    assert "\n" not in str(error.value)
