"""A build whose install step really fails, on each local engine (Docker's classic builder, Podman's
Buildah): one plain line that says where and why, the step's own last lines without the engine's colour
codes, nothing left."""

from __future__ import annotations

import os
import re

import docker
import pytest
from docker.models.containers import Container

from qimg.builder.build import BuildOptions, build_image
from qimg.builder.spec import Distro, ImageSpec
from qimg.errors import BuildFailed

pytestmark = pytest.mark.docker

PACKAGE = "no-such-package-qimg"
# Anything a terminal would not print as text; tab is allowed in output lines.
UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def runs_our_step(container: Container) -> bool:
    """The intermediate container of the failing RUN: its command names the missing package.

    Matched by command, not only by id, since other suites may start containers meanwhile."""
    return PACKAGE in " ".join(container.attrs["Config"].get("Cmd") or [])


def test_a_failing_install_step(engine_client: docker.DockerClient) -> None:
    tag = f"qimgtest/build-failure-{os.getpid()}:latest"
    spec = ImageSpec.create(user="alice", distro=Distro.DEBIAN, packages=[PACKAGE])
    before = {c.id for c in engine_client.containers.list(all=True)}
    steps: list[str] = []
    output: list[str] = []

    with pytest.raises(BuildFailed) as raised:
        build_image(engine_client, spec, tag, BuildOptions(on_step=steps.append, on_output=output.append))

    failure = raised.value
    message = str(failure)
    shown = re.fullmatch(r"build failed at step (\d+)/(\d+) \((RUN .+)\): exit code 100", message)
    assert shown, message
    assert "\x1b" not in message and not UNPRINTABLE.search(message) and "\t" not in message, repr(message)
    assert "rm -rf" not in message and len(shown[3]) <= len("RUN ") + 60 + len("..."), "never the whole RUN"
    assert (failure.number, failure.total) == (int(shown[1]), int(shown[2]))
    assert failure.number < failure.total, "the install step, not the last one"
    assert (failure.instruction, failure.summary, failure.command_exit_code) == ("RUN", shown[3], 100)
    assert failure.step == f"step {failure.number}/{failure.total} ({failure.summary})"
    assert failure.exit_code == 1, "qimg's own exit code is not the command's"

    # The engine colours apt's stderr, at times one write per piece ("E", ": ", ...): one plain line here.
    assert f"E: Unable to locate package {PACKAGE}" in failure.tail, failure.tail
    assert 0 < len(failure.tail) <= 15
    assert not any(line.startswith(("Step ", " ---> ", "Removing intermediate")) for line in failure.tail)
    for line in (*failure.tail, *steps, *output):
        assert "\x1b" not in line and not UNPRINTABLE.search(line), repr(line)
    assert output[-1] == f"E: Unable to locate package {PACKAGE}", "the callbacks saw the same plain line"
    # Each engine's own words for the step: Docker's "Step 2/9 : RUN", Podman's "STEP 2/9: RUN".
    assert re.match(rf"(Step|STEP) {failure.number}/{failure.total} ?: RUN apt-get update && ", steps[-1])

    with pytest.raises(docker.errors.ImageNotFound):
        engine_client.images.get(tag)
    new = [c for c in engine_client.containers.list(all=True) if c.id not in before]
    assert not [c.name for c in new if runs_our_step(c)], "the failed step's container is removed"
