"""Helpers shared by the test suites: running the real `qimg` command."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_qimg(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 600, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`qimg ARGS` as a user runs it, in a child process, with the installed package."""
    return subprocess.run(
        [sys.executable, "-m", "qimg", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], exit_code: int, *fragments: str) -> None:
    """Bad input: the given exit code, one line on stderr naming the problem, no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qimg: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def tool(name: str) -> str:
    """A command installed with the dev dependencies (beside this Python), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: `make install` installs the dev dependencies"
    return found


def run_qimg_on_terminal(
    *args: str, env: Mapping[str, str], answer: str, timeout: float = 120
) -> tuple[int, str]:
    """`qimg ARGS` with a terminal (a pty) as its stdin, stdout and stderr, as a user at a prompt runs
    it: `answer` is typed once qimg asks ("[y/N]"). Returns the exit code and all it showed, without
    terminal escapes and with plain newlines."""
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "qimg", *args], stdin=terminal, stdout=terminal, stderr=terminal,
        env={**os.environ, **env}, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    shown, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: qimg exited and the terminal is closed
                    break
                if not chunk:
                    break
                shown += chunk
                if not answered and b"[y/N]" in shown:
                    os.write(master, answer.encode() + b"\r")
                    answered = True
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", shown.decode("utf-8", "replace"))
    return code, text.replace("\r\n", "\n")
