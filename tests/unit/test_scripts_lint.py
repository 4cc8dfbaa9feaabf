"""Every shell script of the project is shellcheck-clean."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import REPO, tool

SCRIPTS = sorted([*REPO.glob("images/*.sh"), *REPO.glob("scripts/*.sh"), REPO / ".ci" / "run"])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(REPO)))
def test_shellcheck(script) -> None:
    result = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.parent.name == "images"], ids=lambda p: p.name)
def test_image_scripts_are_strict(script) -> None:
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n"), "scripts in images run on any distro: POSIX sh"
    assert "\nset -eu\n" in text
