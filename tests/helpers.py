"""Helpers shared by the test suites: running the real `qimg` command, as a user installs it.

`qimg` here is the console script of the wheel built from this tree, installed in a virtual
environment of its own, and run from a working directory outside the repository: what a user types
after `pip install`, not the editable tree the test process imports. The wheel is built once per
content of the tree (cached under .pytest_cache), so a second run starts at once.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import hashlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from qimg.errors import QimgError

if TYPE_CHECKING:
    from qimg.launcher.backends.base import TaskView
    from qimg.launcher.records import TaskRecord

REPO = Path(__file__).resolve().parent.parent
PACKAGE = (
    REPO / "src" / "qimg"
)  # its subpackages builder, launcher, images are links to the top-level folders
# What setuptools reads besides the package: the metadata and the long description.
PROJECT_FILES = ("pyproject.toml", "README.md")
# Made by tools, never part of a distribution.
GENERATED = (
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    ".hypothesis",
)
INSTALLED = REPO / ".pytest_cache" / "qimg-wheel"


def package_files() -> Iterator[Path]:
    """Every file of the package as the tree holds it (links followed), relative to src/qimg."""
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".pyc"):
                yield (Path(folder) / name).relative_to(PACKAGE)


def package_modules() -> list[str]:
    """The dotted name of every module of the tree, from its files: a new module is in this list."""
    modules = []
    for path in package_files():
        if path.suffix == ".py":
            parts = ("qimg", *path.with_suffix("").parts)
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def package_data_files() -> list[Path]:
    """The files of the package that are not modules: templates, scripts, py.typed."""
    return [path for path in package_files() if path.suffix != ".py"]


def copy_tree(target: Path) -> Path:
    """The project as a fresh clone holds it (links kept as links), without what tools generate:
    builds read it, never the repository, whose leftovers (build/, *.egg-info) would leak into them."""
    shutil.copytree(REPO, target, symlinks=True, ignore=shutil.ignore_patterns(*GENERATED))
    return target


def tree_digest() -> str:
    """A hash of what a build of the tree reads: the package's files and the project files."""
    digest = hashlib.sha256(sys.version.encode())
    for relative in [*map(Path, PROJECT_FILES), *(Path("src/qimg") / p for p in package_files())]:
        digest.update(str(relative).encode() + b"\0" + (REPO / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def make_venv(path: Path) -> Path:
    """A fresh virtual environment; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def pip_install(python: Path, *requirements: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        check=True, cwd=python.parent, capture_output=True, text=True,
    )  # fmt: skip


@functools.cache
def qimg_executable() -> str:
    """The `qimg` console script of the wheel of this tree, built and installed once per content."""
    INSTALLED.mkdir(parents=True, exist_ok=True)
    venv = INSTALLED / "venv"
    python, script, marker = venv / "bin" / "python", venv / "bin" / "qimg", venv / "qimg-tree"
    digest = tree_digest()
    with (INSTALLED / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session of this worktree may be installing
        if script.exists() and marker.exists() and marker.read_text() == digest:
            return str(script)
        marker.unlink(missing_ok=True)
        if not python.exists():
            make_venv(venv)
        with tempfile.TemporaryDirectory(prefix="qimg-wheel-") as scratch:
            tree = copy_tree(Path(scratch) / "tree")
            # The build backend of the development environment, without an isolated one to fetch: the
            # release build (python -m build, isolated) is what tests/packaging checks.
            subprocess.run(
                [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
                 "--outdir", str(Path(scratch) / "dist"), str(tree)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            (wheel,) = (Path(scratch) / "dist").glob("qimg-*.whl")
            uninstall = [str(python), "-m", "pip", "uninstall", "-y", "qimg"]
            subprocess.run(uninstall, check=True, capture_output=True)
            pip_install(python, str(wheel))  # and its dependencies, from the pip cache after the first time
        marker.write_text(digest)
    return str(script)


def qimg_argv(*args: str) -> list[str]:
    """The command line of `qimg ARGS`, the installed console script."""
    return [qimg_executable(), *args]


def outside_repository() -> Path:
    """A fresh empty working directory outside the repository (and so outside its source tree)."""
    return Path(tempfile.mkdtemp(prefix="qimg-cwd-"))


@functools.cache
def _session_directory() -> Path:
    """One directory outside the repository for the processes left running, removed at exit."""
    where = outside_repository()
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    return where


def run_qimg(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`qimg ARGS` as a user runs it, in a child process, with the installed package, from `cwd`
    (by default a fresh directory outside the repository, removed afterwards)."""
    where = cwd or outside_repository()
    try:
        return subprocess.run(
            qimg_argv(*args),
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            cwd=where,
        )
    finally:
        if cwd is None:
            shutil.rmtree(where, ignore_errors=True)


def start_qimg(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
) -> subprocess.Popen[str]:
    """`qimg ARGS` left running, its stdout and stderr piped (text), from `cwd` (by default a
    directory outside the repository)."""
    return subprocess.Popen(
        qimg_argv(*args), env={**os.environ, **(env or {})}, cwd=cwd or _session_directory(), stdin=stdin,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], exit_code: int, *fragments: str) -> None:
    """Bad input: the given exit code, one line on stderr naming the problem, no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qimg: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def stand_in(folder: Path, name: str, script: str) -> dict[str, str]:
    """A program `name` of the test's (a /bin/sh `script`) in `folder`, found first: the PATH that
    puts it there (VS Code's `code`, a browser)."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script)
    (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def write_feature(folder: Path, metadata: dict[str, Any], install: str) -> Path:
    """A Dev Container feature in `folder` (made, with its parents): its devcontainer-feature.json and
    its install.sh."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "devcontainer-feature.json").write_text(json.dumps(metadata))
    (folder / "install.sh").write_text(install)
    return folder


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
        qimg_argv(*args), stdin=terminal, stdout=terminal, stderr=terminal,
        env={**os.environ, **env}, start_new_session=True, cwd=_session_directory(),
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


@dataclass
class Recorder:
    """A `session.Reporter` that keeps what a terminal would have shown of a launch; with
    `fail_on_ready`, the caller fails to show the ready lines (after the task is ready)."""

    fail_on_ready: bool = False
    states: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ready_records: list[TaskRecord] = field(default_factory=list)

    def status(self, view: TaskView, elapsed: float) -> None:
        self.states.append(view.state)

    def note(self, line: str) -> None:
        self.notes.append(line)

    def ready(self, record: TaskRecord) -> None:
        self.ready_records.append(record)
        if self.fail_on_ready:
            raise QimgError("the caller could not show the task")


def engine_commands(image: str) -> dict[str, tuple[str, ...]]:
    """Every kind of command that needs the engine, as a user types it (`image` never built): what a
    fault of the engine itself must stop, each in one line."""
    return {
        "ls": ("ls", "--local"),
        "build": ("build", "--user", "alice", "--tag", image),
        "check": ("check", image),
        "run": ("run", "--local", image, "--command", "true"),
        "stop": ("stop", "--all", "--local"),
    }
