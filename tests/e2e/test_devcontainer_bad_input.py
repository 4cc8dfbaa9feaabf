"""`qimg build --devcontainer` on bad input: one line naming the problem, exit code 2, and nothing built:
neither the image nor the project's own (the base qimg builds a Dockerfile into)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound

from tests.e2e.conftest import User
from tests.helpers import assert_one_line_error

pytestmark = pytest.mark.docker

TAG = "qimgtest/devcontainer-bad:latest"
PROJECT = "badproject"
BASE_TAG = f"qimg/devcontainer-base-{PROJECT}:latest"  # where qimg builds the project's Dockerfile
CONFIG = ".devcontainer/devcontainer.json"
IMAGE = '"image": "debian:bookworm-slim"'
USER_DOCKERFILE = "FROM debian:bookworm-slim\nRUN useradd -m -u 1000 -s /bin/bash vscode\n"
USER_BASE = "qimgtest/devc-user-base:latest"
FEATURE_JSON = json.dumps({"id": "tool", "options": {"version": {"type": "string", "default": "1"}}})

# name: (the project's files, qimg build's arguments after --devcontainer, what the one line says)
CASES: dict[str, tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]] = {
    "not JSONC": (
        {CONFIG: '{\n  // a comment\n  "image": "debian:bookworm-slim"\n  "remoteUser": "dev"\n}\n'},
        (), ("is not valid JSON with comments: line 4", "trailing commas are allowed"),
    ),
    "not an object": ({CONFIG: '["debian:bookworm-slim"]'}, (), ("does not hold a JSON object",)),
    "lifecycle form unknown": (
        {CONFIG: f'{{{IMAGE}, "postStartCommand": 42}}'}, (),
        ("postStartCommand: a number is not a lifecycle command form", "an array of strings"),
    ),
    "lifecycle command of the object form unknown": (
        {CONFIG: f'{{{IMAGE}, "postCreateCommand": {{"deps": {{"run": "make"}}}}}}'}, (),
        ("postCreateCommand.deps: an object is not a command",),
    ),
    "dockerfile outside the context": (
        {CONFIG: '{"build": {"dockerfile": "../Dockerfile", "context": "."}}', "Dockerfile": USER_DOCKERFILE},
        (), ("build.dockerfile:", "is outside the build context", "widen build.context"),
    ),
    "feature without install.sh": (
        {CONFIG: f'{{{IMAGE}, "features": {{"./tool": {{}}}}}}',
         ".devcontainer/tool/devcontainer-feature.json": FEATURE_JSON},
        (), ('features "./tool":', "has no install.sh"),
    ),
    "feature by a deprecated short id": (
        {CONFIG: f'{{{IMAGE}, "features": {{"node": {{}}}}}}'}, (),
        ('features "node": not a feature in a registry', "ghcr.io/devcontainers/features/node:1"),
    ),
    "forwardPorts beyond 65535": (
        {CONFIG: f'{{{IMAGE}, "forwardPorts": [8888, 70000]}}'}, (), ("forwardPorts: 70000 is not a port",),
    ),
    "forwardPorts a name": ({CONFIG: f'{{{IMAGE}, "forwardPorts": ["web"]}}'}, (), ("'web' is not a port",)),
    "forwardPorts of another host": (
        {CONFIG: f'{{{IMAGE}, "forwardPorts": ["db:5432"]}}'}, (),
        ("'db:5432' is a port of another host", "--ignore forwardPorts"),
    ),
    "a key qimg cannot honour": (
        {CONFIG: f'{{{IMAGE}, "runArgs": ["--privileged"]}}'}, (),
        ("runArgs: qimg cannot honour it", "or --ignore runArgs"),
    ),
    "an unknown key": (
        {CONFIG: f'{{{IMAGE}, "forwardPort": [8888]}}'}, (), ("forwardPort: not a devcontainer.json key",),
    ),
    "--ignore of a key the file has not": (
        {CONFIG: f"{{{IMAGE}}}"}, ("--ignore", "mounts"), ("has no key mounts",),
    ),
    "a credential from the environment": (
        {CONFIG: f'{{{IMAGE}, "containerEnv": {{"T": "${{localEnv:GITHUB_TOKEN}}"}}}}'}, (),
        ("would write a credential into the image", "--secret GITHUB_TOKEN"),
    ),
    "an option of the image beside it": (
        {CONFIG: f"{{{IMAGE}}}"}, ("--user", "alice"), ("leave out --user",),
    ),
    "a path that does not exist": (
        {}, ("missing/devcontainer.json",), ("missing/devcontainer.json: no such file",),
    ),
    "no devcontainer.json where qimg looks": (
        {"README": "x"}, (), ("no devcontainer.json in", "--devcontainer PATH"),
    ),
}  # fmt: skip


def absent(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except ImageNotFound:
        return True
    return False


def write_project(root: Path, files: dict[str, str]) -> Path:
    project = root / PROJECT
    project.mkdir()
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return project


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_in_one_line_with_nothing_built(
    case: str, user: User, docker_client: docker.DockerClient
) -> None:
    files, args, fragments = CASES[case]
    for ref in (TAG, BASE_TAG):
        if not absent(docker_client, ref):
            docker_client.images.remove(ref)
    project = write_project(user.workdir, files)
    refused = user.qimg("build", "--devcontainer", *args, "--tag", TAG, cwd=project)
    assert_one_line_error(refused, 2, *fragments)
    assert absent(docker_client, TAG) and absent(docker_client, BASE_TAG)


def test_root_when_the_dockerfile_makes_a_user(local_user: User, engine_client: docker.DockerClient) -> None:
    """Who the Dockerfile's image has is known once it is built: its steps are shown, then the one
    error line, and the image built for it is untagged: nothing is left built (on each local engine)."""
    files = {
        CONFIG: '{"build": {"dockerfile": "Dockerfile"}, "remoteUser": "root"}',
        ".devcontainer/Dockerfile": USER_DOCKERFILE,
    }
    project = write_project(local_user.workdir, files)
    refused = local_user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project)
    assert refused.returncode == 2, refused.stderr
    *steps, last = refused.stderr.strip().splitlines()
    assert any("RUN useradd -m -u 1000" in step for step in steps)
    assert not any("error" in step for step in steps) and "Traceback" not in refused.stderr
    assert last.startswith("qimg: error: ") and "remoteUser: root, but" in last
    assert "has the user vscode (uid 1000)" in last and 'log in as that user: "remoteUser": "vscode"' in last
    assert absent(engine_client, TAG) and absent(engine_client, BASE_TAG)


def test_root_when_the_image_has_a_user(local_user: User, engine_client: docker.DockerClient) -> None:
    """The same refusal for an `image` the engine has (each local engine), before anything is built."""
    engine_client.images.build(fileobj=io.BytesIO(USER_DOCKERFILE.encode()), tag=USER_BASE)
    config = json.dumps({"image": USER_BASE, "remoteUser": "root"})
    project = write_project(local_user.workdir, {".devcontainer.json": config})
    refused = local_user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project)
    assert_one_line_error(refused, 2, f"{USER_BASE} has the user vscode")
    assert absent(engine_client, TAG) and absent(engine_client, BASE_TAG)


def test_paths_relative_and_from_home(user: User) -> None:
    """PATH as typed: relative to the working directory, `~` from HOME; a folder is looked into as the
    project's folder is. Each names the file it read (its runArgs refused: nothing is built)."""
    project = write_project(user.home, {".devcontainer.json": f'{{{IMAGE}, "runArgs": []}}'})
    expected = f"{project}/.devcontainer.json: runArgs: qimg cannot honour it"
    for typed in (
        f"{PROJECT}/.devcontainer.json",
        PROJECT,
        f"~/{PROJECT}",
        "~/badproject/.devcontainer.json",
    ):
        refused = user.qimg("build", "--devcontainer", typed, cwd=user.home)
        assert_one_line_error(refused, 2, expected)
    elsewhere = user.qimg("build", "--devcontainer", f"../{PROJECT}", cwd=user.workdir)
    assert_one_line_error(elsewhere, 2, f"{user.workdir}/../{PROJECT}/.devcontainer.json: runArgs")
