"""The README's CI example (examples/ci/github-actions.yml): a workflow actionlint finds nothing in (with
ShellCheck on its `run:` scripts), quoted in the README as the file is, whose `qimg render` step writes
the context its build step names. It is not run on GitHub from here."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, run_qimg, tool

WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
README = REPO / "README.md"


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-no-color", f"-shellcheck={tool('shellcheck')}", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_workflow_lints_clean() -> None:
    linted = actionlint(WORKFLOW)
    assert (linted.returncode, linted.stdout, linted.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("old", "new", "finding"),
    [
        ("password:", "passwrd:", 'input "passwrd" is not defined in action "docker/login-action@v4"'),
        ('qimg check "$IMAGE"', "qimg check $IMAGE", "SC2086"),
        ("github.repository_owner", "github.repository_ownr", 'property "repository_ownr" is not defined'),
    ],
    ids=["action-input", "shellcheck", "expression"],
)
def test_the_lint_is_live(tmp_path: Path, old: str, new: str, finding: str) -> None:
    """What the lint would catch in the workflow: each mistake, made in a copy, is reported."""
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / "workflow.yml"
    broken.write_text(text.replace(old, new))
    linted = actionlint(broken)
    assert linted.returncode == 1 and finding in linted.stdout, linted.stdout


def test_the_readme_quotes_the_workflow_as_it_is() -> None:
    quoted = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert quoted == [WORKFLOW.read_text()]
    assert f"`{WORKFLOW.relative_to(REPO)}`" in README.read_text()


def test_the_render_step_writes_the_context_the_build_step_names(tmp_path: Path) -> None:
    """The workflow's own `qimg render` line, run as written by the installed qimg (no engine: the
    runner has not pulled the base), in a checkout-like working directory."""
    text = WORKFLOW.read_text()
    (render_line,) = re.findall(r"^\s+run: (qimg render .*)$", text, flags=re.MULTILINE)
    (context,) = re.findall(r"^\s+context: (\S+)$", text, flags=re.MULTILINE)
    argv = shlex.split(render_line)
    rendered = run_qimg(*argv[1:], cwd=tmp_path, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert rendered.returncode == 0, rendered.stderr
    assert (tmp_path / context / "Dockerfile").is_file()
    assert sorted(p.name for p in (tmp_path / context).iterdir()) == [
        "Dockerfile", "qimg-idle.sh", "qimg-setup.sh", "qimg-start.sh", "sshd-qimg.conf",
    ]  # fmt: skip
