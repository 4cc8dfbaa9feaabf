"""Files qimg writes and reads back: every failure is one FileError (the path, the reason, the fix),
nothing is left half-written, and a broken state file stops only what needs it."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from qimg import files, state
from qimg.errors import FileError
from qimg.launcher import sshconfig
from tests.helpers import assert_one_line_error, run_qimg

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_a_folder_where_the_file_belongs(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    with pytest.raises(FileError, match=r"cannot write .*/config: Is a directory; a folder is in its place"):
        files.atomic_write(tmp_path / "config", "text")
    assert (tmp_path / "config").is_dir() and leftovers(tmp_path) == []


def test_a_file_where_a_folder_belongs(tmp_path: Path) -> None:
    (tmp_path / "ssh").write_text("precious\n")
    with pytest.raises(FileError, match=rf"{tmp_path}/ssh is a file where a folder belongs: move it away"):
        files.atomic_write(tmp_path / "ssh" / "config", "text")
    assert (tmp_path / "ssh").read_text() == "precious\n"


# Tests run as root too, which ignores file modes: the system's refusals are injected where they occur.
REFUSALS = [
    ("open", errno.EACCES, "make .* writable by you"),
    ("open", errno.EROFS, "the file system is read-only"),
    ("replace", errno.ENOSPC, "the disk \\(or your quota\\) is full"),
]


@pytest.mark.parametrize(("call", "code", "fix"), REFUSALS, ids=[errno.errorcode[r[1]] for r in REFUSALS])
def test_refused_writes_keep_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int, fix: str
) -> None:
    target = tmp_path / "known_hosts"
    target.write_text("old\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    expected = rf"cannot write {target}: {os.strerror(code)}; {fix}"
    with monkeypatch.context() as patched, pytest.raises(FileError, match=expected):
        patched.setattr(os, call, refuse)
        files.atomic_write(target, "new\n")
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_a_symbolic_link_is_written_through(tmp_path: Path) -> None:
    """Dotfile managers link ~/.ssh/config into a repository: the link stays, its target changes."""
    repository = tmp_path / "dotfiles"
    repository.mkdir()
    (repository / "ssh_config").write_text("Host *\n")
    link = tmp_path / "config"
    link.symlink_to(repository / "ssh_config")
    files.atomic_write(link, "Include x\nHost *\n")
    assert link.is_symlink() and os.readlink(link) == str(repository / "ssh_config")
    assert (repository / "ssh_config").read_text() == "Include x\nHost *\n"
    assert leftovers(tmp_path) == [] and leftovers(repository) == []


def test_an_image_built_but_not_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "qimg" / state.LAST_BUILT).mkdir(parents=True)
    with pytest.raises(FileError) as raised:
        state.remember(state.LAST_BUILT, "qimg/alice:latest")
    message = str(raised.value)
    assert message.startswith("qimg/alice:latest was built, but cannot be remembered as the last image built")
    assert "Is a directory" in message and "qimg check/push/run --local qimg/alice:latest" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, None), (b"", None), (b"qimg/alice:latest\n", "qimg/alice:latest")],
    ids=["missing", "empty", "an image"],
)
def test_recall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, expected: str | None
) -> None:
    if content is not None:
        (tmp_path / "qimg").mkdir()
        (tmp_path / "qimg" / state.LAST_PUSHED).write_bytes(content)
    assert state.recall(state.LAST_PUSHED) == expected


@pytest.mark.parametrize(
    "content", [b"\xff\xfe garbage", b"two words\n", b"qimg/a:b\nRUN id\n", b"x" * 600], ids=repr
)
def test_recall_refuses_what_is_not_an_image_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    (tmp_path / "qimg").mkdir()
    (tmp_path / "qimg" / state.LAST_BUILT).write_bytes(content)
    with pytest.raises(FileError, match="does not hold the name of the last image built: give the image"):
        state.recall(state.LAST_BUILT)
    assert (tmp_path / "qimg" / state.LAST_BUILT).read_bytes() == content


def test_recall_from_a_state_folder_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "qimg").write_text("")
    with pytest.raises(FileError, match=rf"cannot read .*; {tmp_path}/qimg is a file where a folder belongs"):
        state.recall(state.LAST_BUILT)


# The commands, as a user runs them: one line, exit 1, nothing clobbered.


def test_check_with_a_folder_as_last_image(tmp_path: Path) -> None:
    (tmp_path / "qimg" / "last-image").mkdir(parents=True)
    result = run_qimg("check", env=NO_ENGINE)  # the state: tmp_path (tests/conftest.py isolate)
    assert_one_line_error(result, 1, "cannot read", "last-image: Is a directory")


def test_keygen_cannot_write_the_public_key(tmp_path: Path) -> None:
    (tmp_path / "key.pub").mkdir()
    result = run_qimg("keygen", "--out", str(tmp_path / "key"), "--force", env={"HOME": str(tmp_path)})
    assert_one_line_error(result, 1, f"cannot write {tmp_path}/key.pub: Is a directory")


def test_render_into_a_folder_is_bad_input(tmp_path: Path) -> None:
    result = run_qimg("render", "--distro", "debian", "-o", str(tmp_path), env=NO_ENGINE)
    assert_one_line_error(result, 2, f"-o: cannot write {tmp_path}: Is a directory")


def user_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    return {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.mark.parametrize("where", ["ssh/config", "ssh/known_hosts", "ssh"])
def test_ssh_config_with_broken_ssh_files(tmp_path: Path, where: str) -> None:
    env = user_env(tmp_path)
    broken = tmp_path / "state" / "qimg" / where
    broken.parent.mkdir(parents=True, exist_ok=True)
    if where == "ssh":
        broken.write_text("")  # a file where the folder belongs
    else:
        broken.mkdir()
    user_config = tmp_path / "home" / ".ssh" / "config"
    user_config.write_text("Host *\n")
    result = run_qimg("ssh-config", "--install", env=env)
    assert_one_line_error(result, 1, "cannot write", "move it away")
    assert user_config.read_text() == "Host *\n"  # not touched: the Include would name a broken file
    if where == "ssh":
        broken.unlink()
    else:
        broken.rmdir()
    assert run_qimg("ssh-config", "--install", env=env).returncode == 0  # the fix the message gives works


def test_ssh_config_install_keeps_a_symbolic_link(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    target = tmp_path / "dotfiles" / "ssh_config"
    target.parent.mkdir()
    target.write_bytes(b"Host *\n    User caf\xc3\xa9\n")
    link = tmp_path / "home" / ".ssh" / "config"
    link.symlink_to(target)
    result = run_qimg("ssh-config", "--install", env=env)
    assert result.returncode == 0, result.stderr
    include = f"Include {tmp_path}/state/qimg/ssh/config\n".encode()
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes().endswith(include + b"\nHost *\n    User caf\xc3\xa9\n")
    assert run_qimg("ssh-config", "--install", env=env).stdout.startswith("already there")
    assert target.read_bytes().count(include) == 1


def test_ssh_config_install_does_not_replace_an_unreadable_config(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    (tmp_path / "home" / ".ssh" / "config").mkdir()
    result = run_qimg("ssh-config", "--install", env=env)
    assert_one_line_error(result, 1, "cannot read", ".ssh/config: Is a directory")
    assert (tmp_path / "home" / ".ssh" / "config").is_dir()


# Through a symbolic link only a regular file is written (F1): renaming over a device replaced it.


def character_device(path: Path) -> Path:
    """A device like /dev/null (1, 3), made in the test's folder: tests run as root here."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def not_regular(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"thing-{kind}"
    if kind == "device":
        character_device(path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as bound:
            bound.bind(str(path))
    elif kind == "folder":
        path.mkdir()
    return path  # "dangling": nothing there


KINDS = {
    "device": "a character device",
    "fifo": "a FIFO",
    "socket": "a socket",
    "folder": "a folder",
    "dangling": "which cannot be reached (No such file or directory); create that file",
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_link_to_what_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    target = not_regular(tmp_path, kind)
    before = os.lstat(target) if kind != "dangling" else None
    link = tmp_path / "config"
    link.symlink_to(target)
    with pytest.raises(FileError) as raised:
        files.atomic_write(link, "Host *\n")
    message = str(raised.value)
    assert message.startswith(f"cannot write {link}: it is a symbolic link to {target}, ")
    assert KINDS[kind] in message and "\n" not in message
    assert link.is_symlink() and os.readlink(link) == str(target)
    if before is None:
        assert not target.exists()
    else:  # the same thing, untouched
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["device", "fifo", "socket"])
def test_a_state_file_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = not_regular(tmp_path, kind)
    with pytest.raises(FileError, match=rf"cannot write {path}: it is {KINDS[kind]}, not a regular file"):
        files.atomic_write(path, "text")
    assert stat.S_IFMT(os.lstat(path).st_mode) != stat.S_IFREG


def test_a_link_to_a_regular_file_behind_links(tmp_path: Path) -> None:
    """A chain of links: the regular file at its end is written, every link stays."""
    (tmp_path / "real").write_text("old\n")
    (tmp_path / "middle").symlink_to(tmp_path / "real")
    (tmp_path / "config").symlink_to(tmp_path / "middle")
    files.atomic_write(tmp_path / "config", "new\n", mode=0o644)
    assert (tmp_path / "real").read_text() == "new\n" and not (tmp_path / "real").is_symlink()
    assert os.readlink(tmp_path / "config") == str(tmp_path / "middle")
    assert stat.S_IMODE((tmp_path / "real").stat().st_mode) == 0o644 and leftovers(tmp_path) == []


def test_ssh_config_install_through_a_link_to_a_device(tmp_path: Path) -> None:
    """The common `~/.ssh/config -> /dev/null`, run as root: refused, the device stays a device."""
    env = user_env(tmp_path)
    null = character_device(tmp_path / "fakenull")
    link = tmp_path / "home" / ".ssh" / "config"
    link.symlink_to(null)
    result = run_qimg("ssh-config", "--install", env=env)
    expected = f"cannot add the Include line to {link}: it is a symbolic link to {null}, a character device"
    assert_one_line_error(result, 1, expected, "link it to a regular file, or add `Include ")
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)


def test_a_state_ssh_file_linked_to_a_device(tmp_path: Path) -> None:
    """`ssh/known_hosts -> /dev/null` (here a device of the same numbers in the test's folder)."""
    env = user_env(tmp_path)
    null = character_device(tmp_path / "fakenull")
    known_hosts = tmp_path / "state" / "qimg" / "ssh" / "known_hosts"
    known_hosts.parent.mkdir(parents=True)
    known_hosts.symlink_to(null)
    result = run_qimg("ssh-config", env=env)
    assert_one_line_error(result, 1, f"cannot write {known_hosts}: it is a symbolic link to {null}")
    assert stat.S_ISCHR(os.lstat(null).st_mode) and known_hosts.is_symlink()


def test_ssh_config_with_a_file_in_place_of_the_sockets_folder(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    sockets = tmp_path / "state" / "qimg" / "ssh" / "cm"
    sockets.parent.mkdir(parents=True)
    sockets.write_text("")
    result = run_qimg("ssh-config", env=env)
    assert_one_line_error(
        result, 1, f"cannot make the folder {sockets}: a file is in its place: move it away"
    )


def test_a_user_config_linked_to_a_device_holds_no_include(tmp_path: Path) -> None:
    """What `qimg code` asks before it opens VS Code: a config linked to /dev/null holds nothing."""
    link = tmp_path / "config"
    link.symlink_to("/dev/null")
    assert sshconfig.has_include(link) is False
