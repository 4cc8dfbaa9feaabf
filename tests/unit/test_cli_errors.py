"""Bad input: one line, exit 2, no traceback, and nothing started.

DOCKER_HOST points at a socket that does not exist: had a command touched the engine it would
have failed with "the Docker engine does not answer" (exit 1), not with the usage error asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_qimg

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}

BAD_INPUT = [
    (["build", "--user", "Root"], "--user"),
    (["build", "--user", "root"], "system account"),
    (["build", "--user", "a;rm -rf /"], "--user"),
    (["build", "--user", "-x"], "--user"),
    (["build", "--user", "x" * 33], "--user"),
    (["build", "--user", "alice", "--uid", "0"], "--uid"),
    (["build", "--user", "alice", "--uid", "4294967296"], "--uid"),
    (["build", "--user", "alice", "--gid", "-5"], "--gid"),
    (["build", "--user", "alice", "--uid", "abc"], "--uid"),
    (["build", "--distro", "gentoo"], "--distro"),
    (["build", "--package", "vim;id"], "--package"),
    (["build", "--package", "vim\nRUN id"], "--package"),
    (["build", "--base", "Debian:12"], "--base"),
    (["build", "--base", "debian:bookworm slim"], "--base"),
    (["build", "--user", "alice", "--tag", "Bad/Tag"], "--tag"),
    (["build", "--no-root-login"], "nobody could log in"),
    (["build", "--sudo"], "--sudo"),
    (["build", "--bogus"], "--bogus"),
    (["render", "--user", "Root", "--distro", "debian"], "--user"),
    (["check", "not/Valid"], "IMAGE"),
    (["check", "qimg/alice", "--timeout", "0"], "--timeout"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_INPUT, ids=lambda value: repr(value)[:40])
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    assert_one_line_error(run_qimg(*args, env=NO_ENGINE), 2, fragment)


def test_render_needs_a_distro_without_engine_hint() -> None:
    result = run_qimg("render", "--user", "alice", env=NO_ENGINE)
    assert_one_line_error(result, 1, "Docker engine does not answer")


def test_render_to_file_and_no_clobber_on_bad_input(tmp_path: Path) -> None:
    target = tmp_path / "Dockerfile"
    assert run_qimg("render", "--distro", "debian", "--user", "alice", "-o", str(target)).returncode == 0
    assert "FROM debian:bookworm-slim" in target.read_text()
    target.write_text("precious\n")
    assert_one_line_error(
        run_qimg("render", "--distro", "debian", "--user", "Root", "-o", str(target), env=NO_ENGINE),
        2,
        "--user",
    )
    assert target.read_text() == "precious\n"


def test_check_without_any_image(tmp_path: Path) -> None:
    result = run_qimg("check", env={**NO_ENGINE, "XDG_STATE_HOME": str(tmp_path)})
    assert_one_line_error(result, 2, "none built yet")


def test_help_and_version() -> None:
    help_result = run_qimg("--help")
    assert help_result.returncode == 0
    for command in ("render", "build", "check"):
        assert command in help_result.stdout
    assert run_qimg("--version").stdout.startswith("qimg ")
