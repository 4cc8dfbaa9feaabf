"""A rebuild on a base the engine has goes through the engine's API itself: no Docker SDK imported
(requests, urllib3 and its models were a fifth of a no-op rebuild), the same cached image as the SDK's
build of the same spec, and its failures said as the SDK's were."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from qimg.builder.build import build_image
from qimg.builder.spec import ImageSpec
from tests.helpers import run_qimg

pytestmark = pytest.mark.docker

TAG = "qimgtest/rebuild-fast:latest"


def imported_by(result_stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in result_stderr.splitlines() if "|" in line}


def test_a_rebuild_imports_no_sdk_and_hits_the_sdk_builds_cache(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    spec = ImageSpec.create(user="alice")
    with_sdk = build_image(docker_client, spec, TAG)
    state = {"XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPROFILEIMPORTTIME": "1"}
    rebuilt = run_qimg("build", "--user", "alice", "--tag", TAG, "--json", env=state)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["id"] == with_sdk.id, "every step from the SDK build's cache"
    imported = imported_by(rebuilt.stderr)
    assert "qimg.engine_api" in imported
    assert not {name for name in imported if name.split(".")[0] in {"docker", "requests", "urllib3"}}
    assert "Using cache" not in rebuilt.stderr  # the builder's bookkeeping stays hidden, as with the SDK


def test_a_failing_step_is_said_as_before(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    result = run_qimg(
        "build", "--user", "alice", "--package", "no-such-package-qimg-fast", "--tag", "qimgtest/broken-fast",
        env={"XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPROFILEIMPORTTIME": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "qimg: error: build failed at step 2/10 (RUN apt-get update" in result.stderr
    assert "exit code 100" in result.stderr
    assert not {name for name in imported_by(result.stderr) if name.split(".")[0] == "docker"}
    # forcerm, as the SDK's call asked: the failed step's container is gone (named by its command: other
    # tests share the engine).
    leftover = [
        container.id
        for container in docker_client.containers.list(all=True)
        if "no-such-package-qimg-fast" in " ".join(container.attrs["Config"]["Cmd"] or [])
    ]
    assert leftover == []
