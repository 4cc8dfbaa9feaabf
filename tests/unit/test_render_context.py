"""`qimg render --context DIR`: the whole build context, written into a new or empty folder, never over a
user's files; every input checked before anything is written.

DOCKER_HOST points at a socket that does not exist (as in test_cli_errors.py): with `--distro` given,
render needs no engine, and a command that touched one would fail with exit 1, not what is asserted.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, assert_one_line_error, qimg_argv, run_qimg

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
SPEC = ("--user", "alice", "--distro", "debian")
CONTEXT_FILES = {
    "Dockerfile": 0o644, "sshd-qimg.conf": 0o644,
    "qimg-setup.sh": 0o755, "qimg-start.sh": 0o755, "qimg-idle.sh": 0o755,
}  # fmt: skip


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path: content): what a test compares before and after."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_context(folder: Path) -> None:
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == CONTEXT_FILES
    dockerfile = run_qimg("render", *SPEC, env=NO_ENGINE).stdout
    assert (folder / "Dockerfile").read_text() == dockerfile  # the Dockerfile `render` prints
    for copied in ("qimg-setup.sh", "qimg-start.sh", "qimg-idle.sh", "sshd-qimg.conf"):
        assert f"COPY {copied} " in dockerfile  # every file it copies is there


def test_a_relative_context_a_tilde_one_and_missing_parents(tmp_path: Path, isolate: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    written = run_qimg("render", *SPEC, "--context", "ctx", cwd=here, env=NO_ENGINE)
    assert written.returncode == 0, written.stderr
    assert written.stdout == f"wrote the build context to {here}/ctx: docker build {here}/ctx\n"
    assert_context(here / "ctx")
    # `~` no shell expanded (`--context=~/...`), and folders that do not exist yet
    deep = run_qimg("render", *SPEC, "--context=~/a/b/ctx", cwd=here, env=NO_ENGINE)
    assert deep.returncode == 0, deep.stderr
    assert_context(isolate / "a" / "b" / "ctx")
    assert sorted(p.name for p in here.iterdir()) == ["ctx"]  # no folder named "~"


def test_an_empty_folder_is_filled_and_keeps_its_mode(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir(mode=0o750)
    (tmp_path / "ctx").chmod(0o750)
    assert run_qimg("render", *SPEC, "--context", "ctx", cwd=tmp_path, env=NO_ENGINE).returncode == 0
    assert_context(tmp_path / "ctx")
    assert (tmp_path / "ctx").stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize(
    ("setup", "args", "fragments"),
    [
        ({"ctx/notes.txt": "precious\n"}, ("--context", "ctx"), ("ctx: it is not empty (notes.txt)",
                                                                 "never writes over files")),
        ({"ctx/.git/HEAD": "ref\n"}, ("--context", "ctx"), ("it is not empty (.git)",)),
        ({"ctx": "precious\n"}, ("--context", "ctx"), ("ctx: it is a file, not a folder",)),
        ({"blocker": "precious\n"}, ("--context", "blocker/ctx"), ("blocker is a file, not a folder",)),
        ({}, ("--context", "ctx", "-o", "Dockerfile"), ("-o and --context go apart",)),
        ({}, ("--context", ""), ("--context", "empty path")),
        ({}, ("--context", "ctx", "--user", "Root"), ("--user",)),
        ({}, ("--context", "ctx", "--distro", "gentoo"), ("--distro",)),
    ],
    ids=["not-empty", "hidden-file", "a-file", "under-a-file", "with-o", "empty-path", "bad-user",
         "bad-distro"],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, setup: dict[str, str], args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    for name, content in setup.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    before = tree(tmp_path)
    result = run_qimg("render", *SPEC, *args, cwd=tmp_path, env=NO_ENGINE)
    assert_one_line_error(result, 2, *fragments)
    assert tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({name.split("/")[0] for name in setup})


def test_a_write_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    """A real fault in the middle of the context: files larger than RLIMIT_FSIZE cannot be written
    (EFBIG; Python ignores SIGXFSZ), and qimg-setup.sh, the third file, is larger than the first two."""
    limit = 3000
    sizes = [len((REPO / "images" / name).read_bytes()) for name in CONTEXT_FILES if name.endswith(".sh")]
    assert max(sizes) > limit  # the fault does happen

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        qimg_argv("render", *SPEC, "--context", "new/ctx"), cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, **NO_ENGINE}, preexec_fn=small_files, check=False,
    )  # fmt: skip
    assert_one_line_error(result, 2, "--context: cannot write", "new/ctx/qimg-setup.sh: File too large")
    assert list(tmp_path.iterdir()) == []  # the files written, and the folders made, are gone
