"""Podman whose API service is not running, at the socket paths users really point qimg at: every command
that needs the engine says so in one line naming Podman and how to start its service, exits 1, and
starts nothing."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, engine_commands, run_qimg
from tests.podman import START_TIMEOUT, answers_ping

pytestmark = pytest.mark.docker

IMAGE = "qimgtest/podman-never-built:latest"
COMMANDS = engine_commands(IMAGE)


@pytest.fixture(params=["not-started", "killed"])
def dead_podman(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A Podman socket path with no service behind it: rootless Podman's default path in a runtime
    directory where no `podman.socket` was started (no file), or the socket left by a rootful service
    killed with SIGKILL (the file there, nobody listening: Podman removes it only when it ends cleanly)."""
    path = tmp_path / "run" / "podman" / "podman.sock"
    path.parent.mkdir(parents=True)
    if request.param == "killed":
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{path}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(path):
            assert service.poll() is None and time.monotonic() < deadline, (
                "podman system service did not start"
            )
            time.sleep(0.1)
        service.kill()
        service.wait()
        assert path.is_socket() and not answers_ping(path)
    return path


@pytest.mark.parametrize("command", list(COMMANDS))
def test_podman_without_its_service_is_one_line(
    dead_podman: Path, command: str, isolate: Path, tmp_path: Path
) -> None:
    home = isolate
    (home / ".ssh").mkdir(mode=0o700)
    key = home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    result = run_qimg(*COMMANDS[command], env={"DOCKER_HOST": f"unix://{dead_podman}"})
    assert_one_line_error(result, 1, "Podman", str(dead_podman))
    line = result.stderr.strip()
    assert "podman.socket" in line or "podman system service" in line, line
    assert not (tmp_path / "qimg").exists(), "nothing remembered: no image, task or key of a run"
