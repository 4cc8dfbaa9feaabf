"""`qimg cp` with a real `qimg run --local` task: a tree of mixed files up and down byte for byte,
through the pinned ssh config, and the exit codes of copies that fail."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import User
from tests.helpers import assert_one_line_error, qimg_argv

pytestmark = pytest.mark.docker

ODD_NAME = "shell $(touch pwned) 'quoted' ; name.txt"  # data for scp's SFTP protocol, never a command


def make_tree(root: Path) -> None:
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "empty dir").mkdir()
    (root / "text.txt").write_text("hello\nworld\n")
    (root / "random.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))  # large enough for scp's meter
    (root / "empty").write_bytes(b"")
    (root / "a name with spaces.txt").write_text("spaces\n")
    (root / ODD_NAME).write_text("odd\n")
    (root / "nested" / "deeper" / "x.dat").write_bytes(os.urandom(4096))


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a directory."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes() for path in root.rglob("*")
    }


def test_a_tree_up_and_down_byte_for_byte(e2e_image: str, short_user: User, tmp_path: Path) -> None:
    tree, down = tmp_path / "tree", tmp_path / "down"
    tree.mkdir()
    make_tree(tree)
    assert short_user.qimg("run", "--local", e2e_image, "--name", "cpt").returncode == 0
    try:
        up = short_user.qimg("cp", str(tree), "cpt:up")
        assert up.returncode == 0, up.stderr
        assert up.stdout == ""  # not on a terminal: no progress meter
        remote = short_user.qimg("ssh", "cpt", "--", "cd up && sha256sum random.bin && ls ~")
        local_sum = subprocess.run(
            ["sha256sum", "random.bin"], cwd=tree, capture_output=True, text=True, check=True
        ).stdout
        assert remote.stdout.startswith(local_sum) and "pwned" not in remote.stdout

        back = short_user.qimg("cp", "cpt:up", str(down))
        assert back.returncode == 0, back.stderr
        assert snapshot(down) == snapshot(tree)

        missing = short_user.qimg("cp", "cpt:no/such/file", str(tmp_path / "x"))
        assert missing.returncode != 0 and "No such file" in missing.stderr
        assert not (tmp_path / "x").exists()
        nowhere = short_user.qimg("cp", str(tree / "text.txt"), "cpt:/no/such/dir/")
        assert nowhere.returncode != 0

        colon = tmp_path / "with:colon.txt"  # a local name scp would read as a host without ./
        colon.write_text("colon\n")
        assert short_user.qimg("cp", "./with:colon.txt", "cpt:", cwd=tmp_path).returncode == 0
        assert short_user.qimg("ssh", "cpt", "--", "cat", "with:colon.txt").stdout == "colon\n"
    finally:
        assert short_user.qimg("stop", "cpt", "--local").returncode == 0


def test_progress_on_a_terminal_and_one_instance_chosen(
    e2e_image: str, short_user: User, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    assert short_user.qimg("run", "--local", e2e_image, "--name", "two", "--instances", "2").returncode == 0
    try:
        command = shlex.join(qimg_argv("cp", str(big), "two:big.bin", "--instance", "1"))
        on_terminal = subprocess.run(
            ["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
            env={**os.environ, **short_user.env}, stdin=subprocess.DEVNULL, timeout=120, check=False,
            cwd=short_user.workdir,
        )  # fmt: skip
        assert on_terminal.returncode == 0, on_terminal.stdout
        assert "big.bin" in on_terminal.stdout and "100%" in on_terminal.stdout  # scp's meter
        config = str(Path(short_user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config")
        sizes = [
            subprocess.run(
                ["ssh", "-F", config, host, "stat -c %s big.bin || echo none"],
                capture_output=True, text=True, timeout=60, check=False,
            ).stdout.strip()
            for host in ("qimg-two", "qimg-two-1")
        ]  # fmt: skip
        assert sizes == ["none", str(8 * 1024 * 1024)]
        assert_one_line_error(
            short_user.qimg("cp", str(big), "two:", "--instance", "2"), 2, "has 2 instances"
        )
    finally:
        assert short_user.qimg("stop", "two", "--local").returncode == 0


@pytest.mark.parametrize(
    ("source", "target", "fragment"),
    [("a", "b", "neither"), ("t1:a", "t2:b", "both"), ("t1:a\tb", ".", "control characters")],
)
def test_bad_copies_are_refused_before_anything(user: User, source: str, target: str, fragment: str) -> None:
    assert_one_line_error(user.qimg("cp", source, target), 2, fragment)
