"""A rebuild for another user reuses every layer before that user's own: the base, the package
install and the scripts are the same layers on the engine (one download, one push, one pull for a
team); only the sshd drop-in (its AllowUsers) and the account set-up are the user's."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from tests.helpers import run_qimg

pytestmark = pytest.mark.docker

# The layers that name the user: COPY of the sshd drop-in (AllowUsers), RUN qimg-setup USER UID GID.
USER_LAYERS = 2


def built_layers(client: docker.DockerClient, state: Path, *args: str) -> tuple[list[str], list[str]]:
    """The image's RootFS layers and the instruction of each history entry, oldest first."""
    built = run_qimg("build", *args, "--json", env={"XDG_STATE_HOME": str(state)})
    assert built.returncode == 0, built.stderr
    image = client.images.get(json.loads(built.stdout)["id"])
    history = [entry["CreatedBy"] for entry in reversed(image.history())]
    return list(image.attrs["RootFS"]["Layers"]), history


@pytest.mark.parametrize(
    "other",
    [
        ("--user", "bob"),
        ("--user", "carol", "--uid", "2000", "--gid", "2000"),
    ],
)
def test_another_user_reuses_every_layer_before_its_own(
    docker_client: docker.DockerClient, tmp_path: Path, other: tuple[str, ...]
) -> None:
    alice, alice_history = built_layers(
        docker_client, tmp_path, "--user", "alice", "--tag", "qimgtest/layers-alice:latest"
    )
    theirs, their_history = built_layers(
        docker_client, tmp_path, *other, "--tag", "qimgtest/layers-other:latest"
    )
    base = docker_client.images.get("debian:bookworm-slim").attrs["RootFS"]["Layers"]
    shared = len(alice) - USER_LAYERS
    assert shared > len(base) + 1, "the package install and the scripts are layers of their own"
    assert alice[:shared] == theirs[:shared]
    assert len(theirs) == len(alice)
    assert all(a != b for a, b in zip(alice[shared:], theirs[shared:], strict=True)), "the user's own layers"
    # Up to the sshd drop-in, the same instructions, and none names the user.
    drop_in = next(index for index, step in enumerate(alice_history) if "00-qimg.conf" in step)
    assert alice_history[:drop_in] == their_history[:drop_in]
    assert not any("alice" in step for step in alice_history[:drop_in])
