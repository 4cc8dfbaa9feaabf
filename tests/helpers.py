"""Helpers shared by the test suites: running the real `qimg` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_qimg(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`qimg ARGS` as a user runs it, in a child process, with the installed package (in `cwd`)."""
    return subprocess.run(
        [sys.executable, "-m", "qimg", *args],
        cwd=cwd,
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
