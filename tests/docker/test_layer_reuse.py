"""A rebuild for another user reuses every layer before that user's own: the base, the package
install and the scripts are the same layers on the engine (one download, one push, one pull for a
team); only the sshd drop-in (its AllowUsers) and the account set-up are the user's.

Both builders are checked, each on a base of its own made for this run: BuildKit reuses the longest
chain its cache holds, so on an engine whose cache already has a user's whole build (its package
install made apart from alice's, as concurrent builds make them) the layers would differ for reasons of
that history, not of qimg's Dockerfile."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.helpers import run_qimg

pytestmark = pytest.mark.docker

# The layers that name the user: COPY of the sshd drop-in (AllowUsers), RUN qimg-setup USER UID GID.
USER_LAYERS = 2


@pytest.fixture(scope="module", params=["legacy", "buildkit"])
def builder_and_base(
    request: pytest.FixtureRequest, docker_client: docker.DockerClient
) -> Iterator[tuple[dict[str, str], str]]:
    """The builder's environment, and a base no build has used yet (a layer of its own)."""
    tag = f"qimgtest/layers-base-{request.param}:{secrets.token_hex(4)}"
    dockerfile = f"FROM debian:bookworm-slim\nRUN echo {secrets.token_hex(8)} > /qimgtest-base\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield {"DOCKER_BUILDKIT": "0" if request.param == "legacy" else "1"}, tag
    docker_client.images.remove(tag, force=True)


def built_layers(
    client: docker.DockerClient, state: Path, env: dict[str, str], *args: str
) -> tuple[list[str], list[str]]:
    """The image's RootFS layers and the instruction of each history entry, oldest first."""
    built = run_qimg("build", *args, "--json", env={"XDG_STATE_HOME": str(state), **env})
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
    docker_client: docker.DockerClient, tmp_path: Path, other: tuple[str, ...],
    builder_and_base: tuple[dict[str, str], str],
) -> None:  # fmt: skip
    env, base_tag = builder_and_base
    alice, alice_history = built_layers(
        docker_client,
        tmp_path,
        env,
        "--base",
        base_tag,
        "--user",
        "alice",
        "--tag",
        "qimgtest/layers-alice:latest",
    )
    theirs, their_history = built_layers(
        docker_client, tmp_path, env, "--base", base_tag, *other, "--tag", "qimgtest/layers-other:latest"
    )
    base = docker_client.images.get(base_tag).attrs["RootFS"]["Layers"]
    shared = len(alice) - USER_LAYERS
    assert shared > len(base) + 1, "the package install and the scripts are layers of their own"
    assert alice[:shared] == theirs[:shared]
    assert len(theirs) == len(alice)
    assert all(a != b for a, b in zip(alice[shared:], theirs[shared:], strict=True)), "the user's own layers"
    # Up to the sshd drop-in, the same instructions, and none names the user.
    drop_in = next(index for index, step in enumerate(alice_history) if "00-qimg.conf" in step)
    assert alice_history[:drop_in] == their_history[:drop_in]
    assert not any("alice" in step for step in alice_history[:drop_in])
