"""What a user installs holds every module and data file of the tree: the wheel and the sdist as a
release builds them (`python -m build`, isolated), each installed in a fresh virtual environment, and
`pipx install` of the tree; each run from a directory outside the repository, where the tree cannot
stand in for what was installed.

The lists checked come from walking the tree (tests/helpers.py), never from the packaging metadata, so
a module or template that packaging misses fails here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    copy_tree,
    make_venv,
    package_data_files,
    package_modules,
    pip_install,
)

# Imports every module named on its command line and reports where each was found, with the bytes of
# the package's data files, read through importlib.resources as qimg reads its templates. A __main__
# runs the command line when imported: it is found, not imported (`python -m qimg` runs it below).
PROBE = """
import hashlib, importlib, importlib.resources, importlib.util, json, sys
modules, data = json.loads(sys.argv[1])
def origin(name):
    if name.endswith(".__main__"):
        return importlib.util.find_spec(name).origin
    return importlib.import_module(name).__file__
found = {name: origin(name) for name in modules}
files = importlib.resources.files("qimg")
digests = {}
for name in data:
    entry = files.joinpath(name)
    digests[name] = hashlib.sha256(entry.read_bytes()).hexdigest() if entry.is_file() else None
print(json.dumps({"modules": found, "data": digests}))
"""


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel of a copy of the tree, built as a release builds them."""
    scratch = tmp_path_factory.mktemp("dist")
    tree = copy_tree(scratch / "tree")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(scratch / "out"), str(tree)],
        capture_output=True, text=True, check=False, cwd=scratch,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = (scratch / "out").glob("qimg-*.tar.gz")
    (wheel,) = (scratch / "out").glob("qimg-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def outside(tmp_path: Path) -> Path:
    where = tmp_path / "elsewhere"
    where.mkdir()
    return where


def environment() -> dict[str, str]:
    """This environment without what would point a child Python at the tree or at this venv."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}


def assert_installed_whole(python: Path, site: Path, cwd: Path) -> None:
    """Every module of the tree imports from `site` (not from the tree), and every data file is there
    with the tree's bytes."""
    modules = package_modules()
    data = [str(path) for path in package_data_files()]
    probe = subprocess.run(
        [str(python), "-c", PROBE, json.dumps([modules, data])],
        capture_output=True, text=True, check=False, cwd=cwd, env=environment(),
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr  # a module left out: ModuleNotFoundError, named here
    report = json.loads(probe.stdout)
    outside_site = {name: path for name, path in report["modules"].items() if not path.startswith(str(site))}
    assert outside_site == {}, f"imported from outside the installed package: {outside_site}"
    expected = {
        name: hashlib.sha256((REPO / "src" / "qimg" / name).read_bytes()).hexdigest() for name in data
    }
    missing = sorted(name for name in data if report["data"][name] is None)
    assert missing == [], f"data files left out of the package: {missing}"
    assert report["data"] == expected


def assert_qimg_runs(script: Path, cwd: Path) -> None:
    """The console script and `python -m qimg` of its venv (pipx links the script) start, and render
    from the packaged templates."""
    for command in ([str(script)], [str(script.resolve().parent / "python"), "-m", "qimg"]):
        version = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, check=False, cwd=cwd, env=environment()
        )
        assert version.returncode == 0 and version.stdout.startswith("qimg "), (command, version.stderr)
    rendered = subprocess.run(
        [str(script), "render", "--user", "alice"],
        capture_output=True, text=True, check=False, cwd=cwd, env=environment(),
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert "FROM debian:bookworm-slim" in rendered.stdout


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_each_distribution_installs_every_module_and_data_file(
    distributions: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    """The sdist is installed as pip installs one: by building a wheel from it, in a fresh venv."""
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(distributions[kind]))
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    elsewhere = outside(tmp_path)
    assert_installed_whole(python, site / "qimg", elsewhere)
    assert_qimg_runs(tmp_path / "venv" / "bin" / "qimg", elsewhere)


def test_the_lists_walked_are_the_tree() -> None:
    """The walk sees through the links to builder/, launcher/ and images/, and finds qimg.commands."""
    modules = package_modules()
    assert {"qimg.cli", "qimg.commands.run", "qimg.builder.render", "qimg.launcher.keys.ppk"} <= set(modules)
    assert {"qimg.images", "qimg.launcher.backends.qarnot"} <= set(modules)
    assert {"py.typed", "images/qimg-start.sh", "images/base.Dockerfile.j2"} <= {
        str(path) for path in package_data_files()
    }


def test_pipx_install_of_the_tree(tmp_path: Path) -> None:
    """`pipx install PATH` as a user runs it, its home and its bin folder in a scratch directory."""
    tree = copy_tree(tmp_path / "tree")
    env = {
        **environment(),
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    elsewhere = outside(tmp_path)
    installed = subprocess.run(
        [sys.executable, "-m", "pipx", "install", str(tree)],
        capture_output=True, text=True, check=False, cwd=elsewhere, env=env,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert_qimg_runs(tmp_path / "bin" / "qimg", elsewhere)
    venv = tmp_path / "pipx" / "venvs" / "qimg"
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert_installed_whole(venv / "bin" / "python", site / "qimg", elsewhere)
