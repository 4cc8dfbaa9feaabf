"""`qimg cp` and `qimg code` before anything is asked of a backend: operands, links, command lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qimg.errors import UsageError
from qimg.launcher import editor, transfer
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint
from qimg.launcher.transfer import Operand


@pytest.mark.parametrize(
    ("text", "operand"),
    [
        ("sim:/data/x", Operand("sim", "/data/x")),
        ("sim:", Operand("sim", "")),  # the login user's home, as for scp
        ("sim:a b/$(c)", Operand("sim", "a b/$(c)")),  # data: no remote shell reads it
        ("/abs/a:b", Operand(None, "/abs/a:b")),
        # local paths as typed, made absolute against the working directory (/work/a), nothing else changed
        ("./sim:x", Operand(None, "/work/a/./sim:x")),
        ("Sim:x", Operand(None, "/work/a/Sim:x")),  # not a task name
        ("results.csv", Operand(None, "/work/a/results.csv")),
        ("-weird", Operand(None, "/work/a/-weird")),
        ("../b/out/", Operand(None, "/work/a/../b/out/")),  # `..` and the trailing slash kept for scp
        ("~/data", Operand(None, "/home/u/data")),  # quoted, or after `=`: no shell expanded it
        ("~", Operand(None, "/home/u")),
    ],
)
def test_operands(text: str, operand: Operand, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setattr(os, "getcwd", lambda: "/work/a")
    assert transfer.parse_operand(text) == operand


@pytest.mark.parametrize(
    ("source", "target", "fragment"),
    [
        ("a", "b", "neither"),
        ("sim:a", "other:b", "both"),
        ("sim:a\nb", ".", "control characters"),
        ("", "sim:x", "empty path"),
    ],
)
def test_bad_copies_are_refused(source: str, target: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        transfer.plan_copy(source, target)


def test_scp_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src, dst, name = transfer.plan_copy("Sim:x", "sim:/in")
    assert name == "sim"
    argv = transfer.scp_argv(src, dst, "qimg-sim-1")
    # the SFTP protocol (no remote shell), recursive, then no option after "--"; a local name with a colon
    # before any slash is absolute, so scp cannot read it as a host
    assert argv == [
        "scp", "-F", str(tmp_path / "qimg" / "ssh" / "config"), "-s", "-r", "--", f"{tmp_path}/Sim:x",
        "qimg-sim-1:/in",
    ]  # fmt: skip
    down_src, down_dst, _ = transfer.plan_copy("sim:out", "-weird")
    assert transfer.scp_argv(down_src, down_dst, "qimg-sim")[-3:] == [
        "--",
        "qimg-sim:out",
        f"{tmp_path}/-weird",
    ]


def test_instances_are_checked() -> None:
    record = TaskRecord(
        "sim", "local", "id-1", "alice", Path("/k"), None,
        [InstanceRecord(i, Endpoint("127.0.0.1", 2000 + i), ["ssh-ed25519 AAAA"]) for i in range(2)],
    )  # fmt: skip
    assert transfer.instance_host(record, 0) == "qimg-sim"
    assert transfer.instance_host(record, 1) == "qimg-sim-1"
    with pytest.raises(UsageError, match="--instance 2: task sim has 2 instances"):
        transfer.instance_host(record, 2)


@pytest.mark.parametrize(
    ("user", "path", "folder"),
    [
        ("alice", None, "/home/alice"),
        ("root", None, "/root"),
        ("alice", "work/run 1", "/home/alice/work/run 1"),
        ("alice", "~/x/../y", "/home/alice/y"),
        ("alice", "~", "/home/alice"),
        ("alice", "/data", "/data"),
    ],
)
def test_code_folders(user: str, path: str | None, folder: str) -> None:
    assert editor.remote_folder(user, path) == folder


def test_code_link_and_command() -> None:
    space = editor.Workspace("qimg-sim-1", "/home/alice/run 1/#a")
    assert space.link == "vscode://vscode-remote/ssh-remote+qimg-sim-1/home/alice/run%201/%23a"
    assert space.argv == ["code", "--remote", "ssh-remote+qimg-sim-1", "/home/alice/run 1/#a"]
