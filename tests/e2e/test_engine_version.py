"""An engine whose API is older than qimg speaks (a small fake engine on a unix socket, reached through
DOCKER_HOST and through a context the docker CLI made), and a DOCKER_API_VERSION qimg cannot speak:
every command that needs the engine says so in one line naming the engine and how to fix it, and
asks the engine nothing beyond its version."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.fakes.http import UnixHTTPServer, serving
from tests.helpers import assert_one_line_error, engine_commands, run_qimg

pytestmark = pytest.mark.docker

IMAGE = "qimgtest/old-engine-never-built:latest"
COMMANDS = engine_commands(IMAGE)


@pytest.fixture
def old_engine(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An engine speaking API 1.40 (Docker 19.03's) at unix://PATH, and the paths it was asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("API-Version", "1.40")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_POST = do_DELETE = do_HEAD = do_GET

        def address_string(self) -> str:  # a unix socket has no client address
            return "old-engine"

        def log_message(self, format: str, *args: object) -> None:
            pass

    path = tmp_path / "old.sock"
    with serving(UnixHTTPServer(str(path), Handler)):
        yield f"unix://{path}", asked


@pytest.mark.parametrize("command", COMMANDS)
def test_an_engine_below_the_minimum_is_one_line(
    old_engine: tuple[str, list[str]], command: str, isolate: Path, tmp_path: Path
) -> None:
    (isolate / ".ssh").mkdir(mode=0o700)  # run's key, so that the engine is what stops it
    key = isolate / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host, asked = old_engine
    result = run_qimg(*COMMANDS[command], env={"DOCKER_HOST": host})
    assert_one_line_error(
        result, 1, f"DOCKER_HOST={host} speaks Docker API 1.40; qimg needs 1.41 or later: upgrade the engine"
    )
    assert asked and set(asked) == {"/_ping"}  # nothing asked, nothing started
    assert not (tmp_path / "qimg").exists(), "nothing remembered: no image, task or key of a run"


def test_a_context_below_the_minimum_is_named(old_engine: tuple[str, list[str]]) -> None:
    host, asked = old_engine
    docker = shutil.which("docker") or "docker"
    subprocess.run(
        [docker, "context", "create", "old", "--docker", f"host={host}"], check=True, env=os.environ
    )
    result = run_qimg("ls", "--local", env={"DOCKER_CONTEXT": "old"})
    assert_one_line_error(result, 1, f"context old ({host}) speaks Docker API 1.40", "upgrade the engine")
    assert set(asked) == {"/_ping"}


@pytest.mark.parametrize("forced", ["1.40", "latest", "1.4x"])
def test_a_docker_api_version_qimg_cannot_speak_is_exit_2(forced: str) -> None:
    result = run_qimg("ls", "--local", env={"DOCKER_API_VERSION": forced})
    assert_one_line_error(result, 2, f"DOCKER_API_VERSION={forced}: ", "unset it to negotiate")


def test_docker_api_version_is_used() -> None:
    """The real engine at a version the user chose (the minimum): every call of `ls` goes through."""
    result = run_qimg("ls", "--local", "--json", env={"DOCKER_API_VERSION": "1.41"})
    assert result.returncode == 0, result.stderr
