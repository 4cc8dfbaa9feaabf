"""Bad input: one line, exit 2, no traceback, and nothing started.

DOCKER_HOST points at a socket that does not exist: had a command touched the engine it would
have failed with "the Docker engine does not answer" (exit 1), not with the usage error asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qimg.cli import report
from qimg.errors import BuildFailed, LaunchFailed, UsageError
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


def test_check_without_any_image() -> None:
    result = run_qimg("check", env=NO_ENGINE)
    assert_one_line_error(result, 2, "none built yet")


def test_help_and_version() -> None:
    help_result = run_qimg("--help")
    assert help_result.returncode == 0
    for command in ("render", "build", "check"):
        assert command in help_result.stdout
    assert run_qimg("--version").stdout.startswith("qimg ")


# The last tracebacks (F14): each is one line and its exit code.


@pytest.mark.parametrize(
    "args", [["run", "--local", "--key", "/tmp", "qimg/x:1"], ["keygen", "--from", "/tmp"]]
)
def test_a_folder_as_a_key_file(tmp_path: Path, args: list[str]) -> None:
    result = run_qimg(*args, env={**NO_ENGINE, "HOME": str(tmp_path)})
    assert_one_line_error(result, 2, "/tmp: cannot read it (Is a directory): give your public key file")


def test_a_folder_path_that_is_not_utf8(tmp_path: Path) -> None:
    """`$'\\xc3'` reaches Python as a surrogate, which no link can encode."""
    result = run_qimg("code", "cpt", "\udcc3", "--print", "--local", env={**NO_ENGINE, "HOME": str(tmp_path)})
    assert_one_line_error(result, 2, "code: '\\udcc3' is not a folder path")


@pytest.mark.parametrize("host", ["tcp://[::1:2375", "tcp://127.0.0.1:port", "tcp://ö..x:2375"])
def test_a_docker_host_that_is_no_url(host: str) -> None:
    assert_one_line_error(run_qimg("ls", "--local", env={"DOCKER_HOST": host}), 2, f"DOCKER_HOST={host}: ")


def test_a_docker_host_named_in_unicode_is_reached_by_its_idna_name() -> None:
    """A host name http.client sent as IDNA: qimg's own client tried it as ASCII (a traceback)."""
    result = run_qimg("ls", "--local", env={"DOCKER_HOST": "tcp://hö.invalid:2375"})
    assert_one_line_error(result, 1, "the Docker engine does not answer at tcp://hö.invalid:2375 (")


@pytest.mark.parametrize("url", ["http://u:secret@[::1:8080", "http://host:port/"])
def test_a_cluster_url_that_is_no_url(tmp_path: Path, url: str) -> None:
    result = run_qimg(
        "ls", env={"QARNOT_CLIENT_TOKEN": "t", "QARNOT_CLUSTER_URL": url, "HOME": str(tmp_path)}
    )  # fmt: skip
    assert_one_line_error(result, 2, "the Qarnot cluster URL ", "is not an http(s) URL")
    assert "secret" not in result.stderr


def test_push_to_no_registry_prints_its_error_alone() -> None:
    """A live display started and stopped before the refusal printed a blank line first."""
    result = run_qimg("push", "debian:bookworm-slim", "--to", "team/bar:1", env=NO_ENGINE)
    assert_one_line_error(result, 2, "team/bar:1 names no registry")
    assert result.stdout == ""


# An error carries its details and hint; the entry point alone shows them (details, then the line).


def test_an_error_is_shown_with_its_details_once(capsys: pytest.CaptureFixture[str]) -> None:
    failure = BuildFailed(
        "build failed at step 2/3 (RUN apt-get install x): exit code 100",
        "step 2/3 (RUN apt-get install x)",
        ("E: Unable to locate package x", "\x1b]52;c;SGk=\x07"),
    )
    report(failure)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "last output of step 2/3 (RUN apt-get install x):\n"
        "  E: Unable to locate package x\n"
        "  \\x1b]52;c;SGk=\\x07\n"
        "qimg: error: build failed at step 2/3 (RUN apt-get install x): exit code 100\n"
    )


def test_a_failed_launch_shows_what_the_task_printed(capsys: pytest.CaptureFixture[str]) -> None:
    report(LaunchFailed("task failure before ssh was ready", ("task error: NodeLost: gone",)))
    assert capsys.readouterr().err == (
        "  task error: NodeLost: gone\nqimg: error: task failure before ssh was ready\n"
    )


def test_the_hint_follows_the_message_on_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    error = UsageError("--results: /x is a file", hint="name a new or empty directory")
    assert str(error) == "--results: /x is a file; name a new or empty directory"
    report(error)
    assert capsys.readouterr().err == "qimg: error: --results: /x is a file; name a new or empty directory\n"
