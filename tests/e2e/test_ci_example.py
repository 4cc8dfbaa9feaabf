"""The README's CI example (examples/ci/github-actions.yml) run here as a runner would run it, step by step,
against the registry with htpasswd auth: each `run:` step as written (bash -e, the workflow's env, the
context named relative to the checkout), each action replaced by the command it runs. What cannot be run
here: GitHub itself, and `pip install` from the team's repository (the installed qimg of this tree is on
PATH instead, as the install step leaves it)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.fakes.registry import REGISTRY_PASSWORD, REGISTRY_USER, Registry
from tests.helpers import REPO, outside_repository, qimg_executable

pytestmark = pytest.mark.docker
WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
# How GitHub runs a `run:` step on Linux (its default shell: bash).
GITHUB_BASH = ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c")


def expand(text: str, env: dict[str, str]) -> str:
    """The workflow's `${{ env.NAME }}` expressions (the only ones its actions' inputs use here)."""
    return re.sub(r"\$\{\{ env\.(\w+) \}\}", lambda found: env[found[1]], text)


def action_command(uses: str, inputs: dict[str, Any], registry: Registry) -> tuple[list[str], str | None]:
    """The command an action of the workflow runs, and its standard input. An action not listed fails
    the test: a new step in the workflow is run here, or said why not."""
    name = uses.partition("@")[0]
    if name == "actions/setup-python":
        return ["python3", "--version"], None  # the runner's Python: here, the one on PATH
    if name == "docker/login-action":
        assert inputs["registry"] == "ghcr.io"
        login = ["docker", "login", registry.host, "--username", REGISTRY_USER, "--password-stdin"]
        return login, REGISTRY_PASSWORD
    if name == "docker/build-push-action":
        # What the action runs with `push: true` on the runner's default builder (BuildKit, docker driver).
        assert inputs["push"] is True
        return ["docker", "buildx", "build", "--tag", inputs["tags"], "--push", inputs["context"]], None
    raise AssertionError(f"{uses}: no command for this action in {__file__}")


def test_the_workflow_runs_step_by_step(auth_registry: Registry, docker_client: docker.DockerClient) -> None:
    workflow: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    image = auth_registry.ref(f"qimgtest/ci-example:{os.getpid()}")
    # The workflow's env with the runner's values: its image on the test registry, not ghcr.io.
    assert set(workflow["env"]) == {"QIMG", "IMAGE"}
    env = {**os.environ, "IMAGE": image, "QIMG": "(installed)"}
    env["PATH"] = f"{Path(qimg_executable()).parent}{os.pathsep}{env['PATH']}"
    checkout = outside_repository()
    ran = []
    try:
        for step in job["steps"]:
            if "uses" in step:
                inputs = {key: expand(value, env) if isinstance(value, str) else value
                          for key, value in step.get("with", {}).items()}  # fmt: skip
                argv, stdin = action_command(step["uses"], inputs, auth_registry)
            elif step["name"] == "Install qimg":
                assert step["run"] == 'python -m pip install "qimg @ $QIMG"'
                argv, stdin = ["qimg", "--version"], None  # installed: the tree's wheel, on PATH
            else:
                argv, stdin = [*GITHUB_BASH, step["run"]], None
            done = subprocess.run(argv, cwd=checkout, env=env, input=stdin, capture_output=True, text=True,
                                  check=False)  # fmt: skip
            assert done.returncode == 0, (step, done.stdout, done.stderr)
            ran.append(step.get("uses", step.get("name")))
            if step.get("uses", "").startswith("docker/build-push-action"):
                # Gone from the engine: the check step's pull must fetch it from the registry.
                docker_client.images.remove(image)
        assert ran[-1] == "Check the pushed image" and f"qimg check {image}" in done.stdout, done.stdout
        assert docker_client.images.get(image).labels["io.qimg.user"] == "alice"
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image)
