"""buildx's plain progress read into steps, output and the one-line failure (the lines as buildx 0.13
printed them against Docker 20.10's BuildKit), and where qimg finds the docker CLI's buildx plugin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qimg.builder.buildkit import BuildKitLog
from qimg.docker_context import cli_plugin
from qimg.errors import UsageError

# Two COPY steps run at once (their lines interleave), then the install step fails; the summary buildx
# prints after "------" repeats the step's output and is not output of a step.
FAILING = """\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 1.07kB done
#1 DONE 0.0s

#4 [1/7] FROM docker.io/library/debian:bookworm-slim
#4 DONE 0.0s

#5 [internal] load build context
#5 transferring context: 6.11kB done
#5 DONE 0.0s

#6 [3/7] COPY qimg-setup.sh /usr/local/sbin/qimg-setup
#7 [4/7] COPY qimg-start.sh /usr/local/sbin/qimg-start
#6 DONE 0.1s
#7 DONE 0.1s

#8 [2/7] RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
--no-install-recommends openssh-server no-such-package-qimg && apt-get clean
#8 0.402 Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
#8 3.120 Reading package lists...
#8 3.900 \x1b[91mE: Unable to locate package no-such-package-qimg\x1b[0m
#8 ERROR: executor failed running [/bin/sh -c apt-get update && apt-get install -y \
no-such-package-qimg]: exit code: 100
------
 > [2/7] RUN apt-get update && ...:
3.900 E: Unable to locate package no-such-package-qimg
------
ERROR: failed to solve: executor failed running [/bin/sh -c apt-get update]: exit code: 100
"""


def read(text: str) -> tuple[BuildKitLog, list[str], list[str]]:
    steps: list[str] = []
    output: list[str] = []
    log = BuildKitLog(steps.append, output.append)
    log.feed(text.splitlines(keepends=True))
    return log, steps, output


def test_steps_output_and_the_failing_step() -> None:
    log, steps, output = read(FAILING)
    assert [step.split(" ", 1)[0] for step in steps] == ["[1/7]", "[3/7]", "[4/7]", "[2/7]"]
    assert output == [
        "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
        "Reading package lists...",
        "E: Unable to locate package no-such-package-qimg",
    ]
    failure = log.failure()
    assert str(failure).startswith("build failed at step 2/7 (RUN apt-get update && DEBIAN_FRONTEND=")
    assert str(failure).endswith("...): exit code 100"), str(failure)
    assert (failure.number, failure.total, failure.instruction, failure.command_exit_code) == (
        2,
        7,
        "RUN",
        100,
    )
    assert failure.tail == tuple(output), "the failing step's own lines, plain"


def test_a_failure_before_any_step_gives_buildx_reason() -> None:
    log, steps, _ = read(
        "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n"
        "ERROR: failed to solve: dockerfile parse error on line 3: unknown instruction: RUM\n"
    )
    assert steps == []
    assert str(log.failure()) == (
        "build failed before its first step: failed to solve: dockerfile parse error on line 3: unknown "
        "instruction: RUM"
    )


def test_a_base_that_cannot_be_pulled_is_not_a_step() -> None:
    log, _, _ = read(
        "#3 [internal] load metadata for docker.io/library/nothere:1\n"
        "#3 ERROR: pull access denied, repository does not exist or may require authorization\n"
        "------\nERROR: failed to solve: nothere:1: pull access denied\n"
    )
    failure = log.failure()
    assert failure.number == 0 and failure.command_exit_code is None
    assert str(failure) == (
        "build failed before its first step: pull access denied, repository does not exist or may require "
        "authorization"
    )


def test_a_command_printing_step_lines_is_output() -> None:
    _, steps, output = read("#8 [2/3] RUN echo x\n#8 0.100 #9 [3/3] RUN fake\n#8 0.200 [3/3] RUN fake\n")
    assert steps == ["[2/3] RUN echo x"]
    assert output == ["#9 [3/3] RUN fake", "[3/3] RUN fake"]


def test_step_numbers_padded_to_the_width_of_the_total() -> None:
    """Ten steps or more: buildx pads the number ("[ 5/11]", "[dev  5/11]"); the step is still named."""
    log, steps, _ = read(
        "#4 [ 1/11] FROM docker.io/library/debian:bookworm-slim\n#4 DONE 0.0s\n"
        "#8 [dev  5/11] RUN echo hi && [ -d / ] && exit 3\n#8 0.120 hi\n"
        "#8 ERROR: executor failed running [/bin/sh -c echo hi && exit 3]: exit code: 3\n"
    )
    assert steps == [
        "[1/11] FROM docker.io/library/debian:bookworm-slim",
        "[dev 5/11] RUN echo hi && [ -d / ] && exit 3",
    ]
    assert str(log.failure()) == "build failed at step 5/11 (RUN echo hi && [ -d / ] && exit 3): exit code 3"


def plugin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "docker-buildx"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_plugin_is_found_where_the_cli_looks_first(tmp_path: Path) -> None:
    config = tmp_path / "config"
    env = {"DOCKER_CONFIG": str(config)}
    user = plugin(config / "cli-plugins")
    assert cli_plugin("buildx", env) == user
    extra = plugin(tmp_path / "extra")
    (config / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(extra.parent)]}))
    assert cli_plugin("buildx", env) == extra
    os.chmod(extra, 0o644)  # not executable: not a plugin
    assert cli_plugin("buildx", env) == user


def test_a_broken_docker_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"config\.json: not a Docker configuration file"):
        cli_plugin("buildx", {"DOCKER_CONFIG": str(tmp_path)})
