"""Bucket names and keys: what goes up comes down unchanged, and nothing from a bucket is written
outside the target directory."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qimg.errors import UsageError
from qimg.launcher import buckets
from qimg.launcher.buckets import INPUTS, RESULTS

HOSTILE_KEYS = [
    "../escape.txt", "a/../../escape.txt", "/etc/passwd", "//double", "a//b", "./a", "a/./b", "..",
    ".", "", "a/..", "nul\x00byte", "new\nline", "back\\slash", "x" * 1025, "a/" + "y" * 256,
]  # fmt: skip


def test_bucket_names_are_valid_s3_names_and_parse_back() -> None:
    launch_id = "0123456789abcdef"
    for task in ("a", "alice-1a2b", "x" * 40, "a-in-12345678", "b-out-x"):
        for kind in (INPUTS, RESULTS):
            name = buckets.bucket_name(task, kind, launch_id)
            assert 3 <= len(name) <= 63 and name == name.lower() and name[-1].isalnum()
            assert buckets.parse_bucket(name) == buckets.BucketName(task, kind, "01234567")


@pytest.mark.parametrize(
    "name",
    ["qimg", "someone-elses", "qimg-x-in-zzzzzzzz", "qimg-x-in-1234567", "qimg--in-12345678",
     "qimg-X-in-12345678", "qimg-x-tmp-12345678", "my-qimg-x-in-12345678", "qimg-x-in-12345678-copy"],
)  # fmt: skip
def test_other_buckets_are_not_qimgs(name: str) -> None:
    assert buckets.parse_bucket(name) is None


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_hostile_keys_are_refused_and_nothing_is_written(tmp_path: Path, key: str) -> None:
    root = tmp_path / "target"
    root.mkdir()
    assert buckets.key_problem(key) is not None
    with pytest.raises(ValueError, match="unsafe key"):
        buckets.write_into(root, key, lambda handle: handle.write(b"evil"))
    assert list(tmp_path.rglob("*")) == [root]


def test_a_symbolic_link_in_the_target_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "target"
    root.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "victim")
    for key in ("link/x.txt", "link/", "file-link"):
        with pytest.raises(ValueError):
            buckets.write_into(root, key, lambda handle: handle.write(b"evil"))
    assert list(outside.iterdir()) == []


def test_keys_write_files_and_directories_and_replace_whole(tmp_path: Path) -> None:
    buckets.write_into(tmp_path, "a dir/with spaces/file.txt", lambda handle: handle.write(b"one"))
    buckets.write_into(tmp_path, "empty/", lambda handle: handle.write(b"never called"))
    buckets.write_into(tmp_path, "a dir/with spaces/file.txt", lambda handle: handle.write(b"two"))
    assert (tmp_path / "a dir" / "with spaces" / "file.txt").read_bytes() == b"two"
    assert (tmp_path / "empty").is_dir() and list((tmp_path / "empty").iterdir()) == []

    def broken(handle: BinaryIO) -> None:
        handle.write(b"half")
        raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        buckets.write_into(tmp_path, "a dir/with spaces/file.txt", broken)
    assert (tmp_path / "a dir" / "with spaces" / "file.txt").read_bytes() == b"two"  # the old one, whole
    assert sorted(p.name for p in (tmp_path / "a dir" / "with spaces").iterdir()) == ["file.txt"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab./\\\x00 é"), max_size=12))
def test_any_accepted_key_stays_inside_the_target(key: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "target"
        root.mkdir()
        try:
            buckets.write_into(root, key, lambda handle: handle.write(b"x"))
        except ValueError:
            assert buckets.key_problem(key) is not None
        else:
            assert buckets.key_problem(key) is None
        for path in Path(tmp).rglob("*"):
            assert path == root or root in path.parents, (key, path)


def test_a_walked_directory_comes_back_as_the_same_keys(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "nested" / "deep").mkdir(parents=True)
    (source / "empty dir").mkdir()
    (source / "a b.txt").write_text("x")
    (source / "nested" / "deep" / "leaf").write_bytes(b"12345")
    upload = buckets.walk_upload("--upload", source, "src")
    assert [(path and path.relative_to(source).as_posix(), key) for path, key in upload.entries] == [
        ("a b.txt", "src/a b.txt"), (None, "src/empty dir/"), ("nested/deep/leaf", "src/nested/deep/leaf"),
    ]  # fmt: skip
    assert upload.size == 6
    assert all(buckets.key_problem(key) is None for _, key in upload.entries)


def _symlink(directory: Path) -> None:
    (directory / "key").symlink_to(Path.home() / ".ssh" / "id_ed25519")


def _fifo(directory: Path) -> None:
    os.mkfifo(directory / "pipe")


def _socket(directory: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(directory / "sock"))


def _backslash(directory: Path) -> None:
    (directory / "a\\b").write_text("x")


def _newline(directory: Path) -> None:
    (directory / "a\nb").write_text("x")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [(_symlink, "a symbolic link"), (_fifo, "not a regular file"), (_socket, "not a regular file"),
     (_backslash, "cannot be a bucket key"), (_newline, "cannot be a bucket key")],
)  # fmt: skip
def test_what_cannot_go_up_is_refused(tmp_path: Path, make: Callable[[Path], None], fragment: str) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    make(source / "sub")
    with pytest.raises(UsageError, match=fragment):
        buckets.walk_upload("--upload", source, "src")


def test_upload_needs_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="no such directory"):
        buckets.walk_upload("--upload", tmp_path / "missing", "missing")
    with pytest.raises(UsageError, match="not a directory"):
        buckets.walk_upload("--upload", tmp_path / "file", "file")


def test_results_target(tmp_path: Path) -> None:
    assert (
        buckets.check_target("--results", tmp_path / "new" / "dir", reusable=False)
        == tmp_path / "new" / "dir"
    )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "precious").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        buckets.check_target("--results", tmp_path / "full", reusable=False)
    assert buckets.check_target("--results", tmp_path / "full", reusable=True) == tmp_path / "full"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        buckets.check_target("--results", tmp_path / "file", reusable=True)
    (tmp_path / "link").symlink_to(tmp_path / "full")
    with pytest.raises(UsageError, match="not a directory"):
        buckets.check_target("--results", tmp_path / "link", reusable=True)


def test_a_directory_swapped_for_a_link_while_a_file_is_written_leads_nothing_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adversarial-3 F3, made deterministic: `sub` is checked, then, right before the file beside its
    final name is opened, a racer replaces `sub` by a link to a directory outside the target."""
    outside, root = tmp_path / "outside", tmp_path / "target"
    outside.mkdir()
    (root / "sub").mkdir(parents=True)
    real_open = os.open

    def racing_open(path: object, *args: object, **kwargs: object) -> int:
        if str(path).endswith(".part") and not (root / "sub").is_symlink():
            (root / "sub").rename(root / "moved")
            (root / "sub").symlink_to(outside)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", racing_open)
    buckets.write_into(root, "sub/file.txt", lambda handle: handle.write(b"object"))
    monkeypatch.undo()
    assert list(outside.iterdir()) == []
    assert (root / "moved" / "file.txt").read_bytes() == b"object"  # where the checked directory went


def test_a_leftover_partial_file_is_replaced_not_written_through(tmp_path: Path) -> None:
    """A file beside the final name left by an earlier run (here a hard link to a file elsewhere, as
    someone with write access to the target could leave) is removed, never opened and truncated."""
    outside = tmp_path / "precious"
    outside.write_bytes(b"precious")
    root = tmp_path / "target"
    root.mkdir()
    os.link(outside, root / f".file.txt.qimg-{os.getpid()}.part")
    buckets.write_into(root, "file.txt", lambda handle: handle.write(b"object"))
    assert outside.read_bytes() == b"precious" and (root / "file.txt").read_bytes() == b"object"
