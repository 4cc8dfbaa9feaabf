"""qimg starts where POSIX is missing (Windows): every module imports, and `qimg --help` and
`qimg run --help` run, with the POSIX-only modules refused and the POSIX-only names of `os`,
`signal` and `socket` removed. This is a simulation on Linux, not a Windows run: it proves that
nothing POSIX-only is reached at import or for help, not that commands work there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Modules Windows' Python has not, and names its os, signal and socket lack.
POSIX_MODULES = ("fcntl", "termios", "pwd", "grp", "resource", "pty", "tty")
POSIX_NAMES = {
    "os": ("getuid", "geteuid", "getgid", "setsid", "killpg", "getpgid", "fork", "sync", "getpwnam"),
    "signal": ("SIGHUP", "SIGKILL", "SIGQUIT", "SIGALRM", "SIGCHLD", "SIGPIPE", "SIGUSR1", "SIGUSR2"),
    "socket": ("AF_UNIX",),
}

SIMULATION = f"""
import importlib, importlib.abc, pkgutil, sys

class NoPosix(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in {POSIX_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (simulated Windows)", name=name)
        return None

sys.meta_path.insert(0, NoPosix())
for module in {POSIX_MODULES!r}:
    sys.modules.pop(module, None)
for module, names in {POSIX_NAMES!r}.items():
    loaded = importlib.import_module(module)
    for name in names:
        if hasattr(loaded, name):
            delattr(loaded, name)

import qimg
for found in pkgutil.walk_packages(qimg.__path__, "qimg."):
    if found.name != "qimg.__main__":  # the script `python -m qimg` runs: main(), below
        importlib.import_module(found.name)
from qimg.cli import main  # the entry point the installed `qimg` runs
print("imported", len(sys.modules))
sys.argv[0] = "qimg"
main()
"""


def simulate(tmp_path: Path, *args: str, code: str = SIMULATION) -> subprocess.CompletedProcess[str]:
    """`qimg ARGS` in the simulation, after every module of the package was imported."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "usage"), [(("--help",), "Usage: qimg [OPTIONS]"), (("run", "--help"), "Usage: qimg run")]
)
def test_every_module_imports_and_help_runs_without_posix(
    tmp_path: Path, args: tuple[str, ...], usage: str
) -> None:
    result = simulate(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported" in result.stdout and usage in result.stdout


def test_the_simulation_does_refuse_posix(tmp_path: Path) -> None:
    """The check itself: code that imports fcntl at module level is caught."""
    result = simulate(tmp_path, "--help", code=SIMULATION.replace("import qimg\n", "import fcntl\n", 1))
    assert result.returncode != 0 and "simulated Windows" in result.stderr
