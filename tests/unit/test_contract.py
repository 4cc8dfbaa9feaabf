"""The DOCKER_* constants a task gets."""

from __future__ import annotations

from pathlib import Path

from qimg.builder.spec import ImageRef
from qimg.launcher.contract import task_constants
from qimg.launcher.keys.read import LoginKey
from qimg.launcher.keys.wire import PublicKey


def test_constants_for_hub_and_private_registries() -> None:
    key = LoginKey((PublicKey("ssh-ed25519", b"\0\0\0\x0bssh-ed25519" + b"\0" * 36, "me"),), Path("k"))
    hub = task_constants(ImageRef.parse("ubuntu:24.04", "IMAGE"), key, "start", 60, None)
    assert hub == {
        "DOCKER_REPO": "library/ubuntu", "DOCKER_TAG": "24.04", "DOCKER_SSH": key.keys[0].line,
        "DOCKER_CMD": "start", "QIMG_MAX_SECONDS": "60",
    }  # fmt: skip
    private = task_constants(ImageRef.parse("reg.example.com/t/a:1", "IMAGE"), key, "start", 60, ("u", "p"))
    assert private["DOCKER_SRV"] == "https://reg.example.com"
    assert (private["DOCKER_REGISTRY_LOGIN"], private["DOCKER_REGISTRY_PASSWORD"]) == ("u", "p")
