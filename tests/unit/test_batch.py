"""Batch runs (issue 15, 2.5): --command on a profile without ssh is the task's own command."""

from __future__ import annotations

from typing import Any

import pytest

from qimg.errors import UsageError
from qimg.launcher.backends import registry
from qimg.launcher.options import LaunchOptions
from qimg.launcher.plan import is_batch
from qimg.launcher.session import batch_output


@pytest.mark.parametrize(
    ("options", "batch"),
    [
        ({"profile": "docker-batch", "command": "make"}, True),
        ({"profile": "docker-cluster-network", "command": "make"}, True),
        ({"profile": "docker-batch"}, False),  # no command: refused later, as qimg could not log in
        ({"profile": "docker-network-ssh", "command": "make"}, False),
        ({"profile": "docker-batch", "command": "make", "backend": registry.LOCAL}, False),
    ],
)
def test_which_launches_are_batch(options: dict[str, Any], batch: bool) -> None:
    assert is_batch(LaunchOptions(**options)) is batch


def test_options_that_need_a_login_are_refused_in_batch() -> None:
    with pytest.raises(
        UsageError, match="--tunnel needs an ssh login, and --profile docker-batch has no ssh"
    ):
        is_batch(LaunchOptions(profile="docker-batch", command="make", tunnels=("8888",)))


def test_the_start_scripts_lines_are_left_out_of_the_output() -> None:
    text = "qimg-host-key: ssh-ed25519 AAAA\nqimg-start: running the command as alice\n"
    text += "result 1\n  qimg-start: kept\n"
    assert batch_output(text) == "result 1\n  qimg-start: kept\n"
