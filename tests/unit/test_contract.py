"""The DOCKER_* constants a task gets."""

from __future__ import annotations

import re
from pathlib import Path

from qimg.builder.spec import ImageRef
from qimg.launcher import contract
from qimg.launcher.contract import Start, task_constants
from qimg.launcher.keys.read import LoginKey
from qimg.launcher.keys.wire import PublicKey
from tests.helpers import REPO

KEY = LoginKey((PublicKey("ssh-ed25519", b"\0\0\0\x0bssh-ed25519" + b"\0" * 36, "me"),), Path("k"))


def test_constants_for_hub_and_private_registries() -> None:
    hub = task_constants(
        ImageRef.parse("ubuntu:24.04", "IMAGE"), KEY, Start("start"), 60, 1_700_000_060, None
    )
    assert hub == {
        "DOCKER_REPO": "library/ubuntu", "DOCKER_TAG": "24.04", "DOCKER_SSH": KEY.keys[0].line,
        "DOCKER_CMD": "start", "QIMG_MAX_SECONDS": "60", "QIMG_DEADLINE": "1700000060",
    }  # fmt: skip
    private = task_constants(
        ImageRef.parse("reg.example.com/t/a:1", "IMAGE"), KEY, Start("start"), 60, 1_700_000_060, ("u", "p")
    )
    assert private["DOCKER_SRV"] == "https://reg.example.com"


def test_the_registry_password_is_a_secret_constant() -> None:
    """Qarnot shows a QARNOT_SECRET__ constant as [SECRET] to whoever reads the task; a plain one in clear."""
    for ref in ("reg.example.com/t/a:1", "alice/private:1"):  # a private registry, and Docker Hub
        constants = task_constants(ImageRef.parse(ref, "IMAGE"), KEY, Start("start"), 60, 1, ("u", "p"))
        assert constants["DOCKER_REGISTRY_LOGIN"] == "u"
        assert constants["QARNOT_SECRET__DOCKER_REGISTRY_PASSWORD"] == "p"
        assert [name for name, value in constants.items() if value == "p"] == [
            "QARNOT_SECRET__DOCKER_REGISTRY_PASSWORD"
        ]


def test_foreign_images_start_as_root_with_a_command_qarnot_leaves_alone() -> None:
    start = contract.foreign_start()
    assert start.user == "root"  # whatever the image's USER: the script sets up sshd
    assert start.command.startswith("sh -c ")
    assert "${" not in start.command  # Qarnot would substitute it before any shell sees it
    assert len(start.command) <= contract.MAX_LENGTH
    constants = task_constants(ImageRef.parse("debian:12", "IMAGE"), KEY, start, 60, 1, None)
    assert constants["DOCKER_USER"] == "root" and constants["DOCKER_CMD"] == start.command


def test_the_foreign_script_runs_what_the_plan_checks_for() -> None:
    """The pre-check of an image (FOREIGN_NEEDS) and the script agree: absolute paths, both ways."""
    script = (REPO / "images" / contract.FOREIGN_START).read_text()
    commands = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    run = set(re.findall(r"(/usr/s?bin/[a-z-]+)", commands))
    assert run == set(contract.FOREIGN_NEEDS)
    assert "${" not in script
