"""Paths as people type them, made absolute once where they enter (`files.user_path`, the parser of every
path option), and qimg's state directory as the XDG Base Directory spec defines it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qimg import state
from qimg.files import user_path
from tests.helpers import assert_one_line_error, run_qimg


@pytest.mark.parametrize(
    ("typed", "absolute"),
    [
        ("key.pub", "/work/a/key.pub"),
        ("../b/key.pub", "/work/a/../b/key.pub"),  # `..` kept: after a symbolic link it is not the parent
        ("./k", "/work/a/./k"),
        ("dir/", "/work/a/dir/"),  # a trailing slash still says "a directory"
        ("~", "/home/u"),
        ("~/.ssh/id.pub", "/home/u/.ssh/id.pub"),
        ("/abs/x", "/abs/x"),
        ("~nosuchuser-qimg/x", "/work/a/~nosuchuser-qimg/x"),  # as the shell leaves it: a name
    ],
)
def test_user_path(typed: str, absolute: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setattr(os, "getcwd", lambda: "/work/a")
    assert user_path(typed) == absolute


def test_a_user_path_keeps_symbolic_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    assert user_path("link") == f"{tmp_path}/link"  # what --upload refuses stays visible


def test_empty_and_orphaned_paths_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="an empty path"):
        user_path("")
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(ValueError, match="x is relative, and the working directory is gone"):
        user_path("x")
    assert user_path("/still/fine") == "/still/fine"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["run", "--key", ""], "--key"),
        (["run", "--upload="], "--upload"),
        (["run", "--results", ""], "--results"),
        (["render", "-o", ""], "-o"),
        (["keygen", "--out="], "--out"),
        (["keygen", "--from", ""], "--from"),
        (["fetch", "t1", ""], "directory"),
        (["cp", "", "t1:x"], "cp"),
    ],
)
def test_an_empty_path_is_one_line(args: list[str], option: str, tmp_path: Path) -> None:
    result = run_qimg(*args, env={"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "s")})
    assert_one_line_error(result, 2, option, "an empty path")
    assert list(tmp_path.iterdir()) == []


def test_a_relative_xdg_state_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("relstate", "./s", "~/s", ""):
        monkeypatch.setenv("XDG_STATE_HOME", value)
        assert state.state_dir() == tmp_path / "home" / ".local" / "state" / "qimg"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "abs"))
    assert state.state_dir() == tmp_path / "abs" / "qimg"


def test_qimg_with_a_relative_xdg_state_home_writes_under_home(tmp_path: Path) -> None:
    """A relative XDG_STATE_HOME wrote a relative UserKnownHostsFile and ControlPath: the tasks could be
    reached only from that directory."""
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    result = run_qimg(
        "ssh-config", env={"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": "relstate"}, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    config = tmp_path / "home" / ".local" / "state" / "qimg" / "ssh" / "config"
    assert result.stdout == f"{config}\n" and config.is_file()
    assert list(cwd.iterdir()) == []
