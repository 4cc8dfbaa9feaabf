"""A devcontainer's hostRequirements, from devcontainer.json to the task Qarnot is asked for: built into
the image's labels, pushed, read back from the registry by `qimg run`, and sent as the least hardware
constraints the account offers at or above them (the fake Qarnot API's offers: cores 8, 16, 32; RAM
32000, 64000, 128000 MB); what the user gives wins; the local engine runs the image as it is."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest

from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import Registry
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker

TAG = "qimgtest/devcontainer-host:latest"
# 10 cpus: the 16-core offer; 40gb, read in binary units as the Dev Containers CLI does (42950 MB):
# the 64000 MB offer; storage: set aside (no Qarnot constraint chooses a disk).
DEVCONTAINER = {
    "image": "debian:bookworm-slim",
    "remoteUser": "dev",
    "hostRequirements": {"cpus": 10, "memory": "40gb", "storage": "64gb", "gpu": "optional"},
}


@pytest.fixture(scope="module")
def host_image(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[str]:
    project = tmp_path_factory.mktemp("project")
    (project / ".devcontainer.json").write_text(json.dumps(DEVCONTAINER))
    state = tmp_path_factory.mktemp("build-state")
    built = run_qimg("build", "--devcontainer", "--tag", TAG, env={"XDG_STATE_HOME": str(state)}, cwd=project)
    assert built.returncode == 0, built.stderr
    set_aside = ".devcontainer.json: hostRequirements.storage set aside: a Qarnot task's disk is its"
    assert set_aside in built.stderr
    yield TAG
    docker_client.images.remove(TAG)


def constraints(fake: FakeQarnot) -> list[dict[str, object]]:
    found: list[dict[str, object]] = fake.body("POST", "/tasks")["hardwareConstraints"]
    return found


def test_host_requirements_become_the_least_offered_constraints(
    user: User, fake: FakeQarnot, auth_registry: Registry, host_image: str
) -> None:
    target = user.push_to(host_image, auth_registry, "team/devcontainer-host:e2e")
    ran = user.launch(target, "--command", "true")
    assert ran.returncode == 0, ran.stderr
    assert fake.count("GET", "/hardware-constraints") == 1  # asked once: for the fit and the checks
    assert constraints(fake) == [
        {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 16},
        {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 64000},
    ]
    chosen = user.launch(target, "--command", "true", "--cores", "8")
    assert chosen.returncode == 0, chosen.stderr
    assert constraints(fake) == [
        {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 8},
        {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 64000},
    ]
    # An account whose machines have at most 8 cores: refused before any task, naming the way out.
    fake.account.hardware = [
        offer for offer in fake.account.hardware
        if offer["discriminator"] != "MinimumCoreHardwareConstraint" or offer["coreCount"] < 16
    ]  # fmt: skip
    posted = len([request for request in fake.bodies if request[:2] == ("POST", "/tasks")])
    refused = user.launch(target, "--command", "true")
    assert_one_line_error(
        refused, 2, "asks for 10 cpus (its devcontainer's hostRequirements), more than the account offers",
        "(--cores 8 at most", "choose with --cores",
    )  # fmt: skip
    assert len([request for request in fake.bodies if request[:2] == ("POST", "/tasks")]) == posted


def test_the_local_engine_runs_it_as_it_is(user: User, host_image: str) -> None:
    ran = user.qimg("run", "--local", host_image, "--command", "nproc")
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout.strip()) >= 1
