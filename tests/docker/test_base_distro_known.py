"""The distro family of a base image, remembered by the image's ID (reading /etc/os-release takes a
container, most of a no-op rebuild's time): what is remembered is used, what is not an ID and a
family is not, and another image (another ID) is read again."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from tests.helpers import run_qimg

pytestmark = pytest.mark.docker

BASE = "debian:bookworm-slim"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def rendered_distro(state: Path) -> str:
    result = run_qimg("render", "--user", "alice", env={"XDG_STATE_HOME": str(state)})
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "io.qimg.distro=" in line]
    return line.split('"')[1]


def test_the_family_read_is_remembered_and_used(docker_client: docker.DockerClient, state: Path) -> None:
    base_id = docker_client.images.get(BASE).id
    assert rendered_distro(state) == "debian"
    known = state / "qimg" / "base-distros"
    assert json.loads(known.read_text()) == {base_id: "debian"}
    # Proof that the file is what answers: a family it names for this ID is the one rendered.
    known.write_text(json.dumps({base_id: "rhel"}))
    assert rendered_distro(state) == "rhel"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '["debian"]',
        json.dumps({"debian:bookworm-slim": "rhel"}),  # a name, not an ID: names move
        json.dumps({"sha256:" + "0" * 64: "rhel"}),  # another image's ID
        "{ID: 1}",
    ],
)
def test_what_is_not_an_id_and_a_family_is_read_again(
    docker_client: docker.DockerClient, state: Path, content: str
) -> None:
    known = state / "qimg" / "base-distros"
    known.parent.mkdir(parents=True)
    base_id = docker_client.images.get(BASE).id
    known.write_text(content.replace("ID", json.dumps(base_id)))
    assert rendered_distro(state) == "debian"
    assert json.loads(known.read_text())[base_id] == "debian"
