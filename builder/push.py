"""`qimg push`: push an image with the Docker SDK, and prove it arrived.

docker-py does not raise when a registry refuses a push (`unauthorized`, `denied`): the refusal is
only in the JSON stream. Every chunk is checked, and the digest the engine reports (Docker's in `aux`;
Podman's only in the status line the docker CLI prints) is then confirmed by asking the registry itself
for the tag's manifest (`registry_api`: not the engine's /distribution endpoint, which Podman has not).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qimg import engine, registry_api, state
from qimg.builder.spec import ImageRef, check_image_ref
from qimg.engine_api import Engine
from qimg.errors import PushFailed, UsageError, first_line

if TYPE_CHECKING:
    import docker

RegistryAuth = tuple[str, str]  # (username, password)
_PUSHED_DIGEST = re.compile(r"(?P<tag>[^\s:]+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: [0-9]+")


@dataclass(frozen=True)
class LayerProgress:
    layer: str
    status: str
    current: int
    total: int


@dataclass(frozen=True)
class Pushed:
    """What the registry was shown to hold: the reference pushed and the digest it serves for it."""

    ref: str
    digest: str

    def as_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "digest": self.digest, "pinned": self.pinned}

    @property
    def pinned(self) -> str:
        """REF@sha256:..., what `docker pull` takes to get exactly this image."""
        return f"{self.ref}@{self.digest}"


def push_target(source: str, to: str | None) -> ImageRef:
    """The reference to push, which must name its registry: pushing `qimg/alice` would mean Docker Hub."""
    target = ImageRef.parse(to or source, "--to" if to else "IMAGE")
    if target.digest:
        raise UsageError(f"cannot push to a digest ({target}): name a tag, e.g. --to REGISTRY/NAME:TAG")
    explicit = (to or source).split("/", 1)[0]
    if not ("." in explicit or ":" in explicit or explicit == "localhost"):
        raise UsageError(
            f"{to or source} names no registry: push with --to REGISTRY/NAME:TAG, e.g. --to "
            f"registry.example.com/team/{target.repository.rsplit('/', 1)[-1]}:{target.tag} "
            f"(docker.io/USER/NAME:TAG for Docker Hub)"
        )
    return target


def push_image(
    client: docker.DockerClient,
    source: str,
    target: ImageRef,
    auth: RegistryAuth | None = None,
    on_progress: Callable[[LayerProgress], None] | None = None,
) -> Pushed:
    from docker.errors import APIError

    image = Engine.from_env().local_image(source)
    auth_config = {"username": auth[0], "password": auth[1]} if auth else None
    tags = image.get("RepoTags") or []
    retagged = str(target) not in tags
    if retagged:
        client.api.tag(source, target.repository_ref, target.tag)
    try:
        return _pushed(client, target, auth_config, on_progress)
    except BaseException:
        # A push that failed or was interrupted leaves no tag of its own behind. The image is never
        # removed with it: with no other tag (named by its id), the retag stays.
        if retagged and tags:
            with contextlib.suppress(APIError):
                client.api.remove_image(str(target), noprune=True)
        raise


def _pushed(
    client: docker.DockerClient, target: ImageRef, auth_config: dict[str, str] | None,
    on_progress: Callable[[LayerProgress], None] | None,
) -> Pushed:  # fmt: skip
    from docker.errors import APIError

    digest = ""
    try:
        stream = client.api.push(
            target.repository_ref, target.tag, stream=True, decode=True, auth_config=auth_config
        )
        for chunk in stream:
            digest = _check_chunk(chunk, target) or digest
            if on_progress and chunk.get("id") and chunk.get("status"):
                detail = chunk.get("progressDetail") or {}
                on_progress(
                    LayerProgress(
                        chunk["id"],
                        chunk["status"],
                        int(detail.get("current", 0)),
                        int(detail.get("total", 0)),
                    )
                )
        if not digest:
            raise PushFailed(
                f"pushing {target}: the engine reported no digest, so nothing is known to be pushed"
            )
    except APIError as error:
        raise PushFailed(
            f"pushing {target}: {_explain(getattr(error, 'explanation', None) or str(error))}"
        ) from None
    given = (auth_config["username"], auth_config["password"]) if auth_config else None
    confirmed = registry_api.tag_digest(target, given or engine.registry_credentials(target.registry))
    if confirmed is None:
        raise PushFailed(f"pushing {target}: the registry does not have it after the push")
    if confirmed != digest:
        raise PushFailed(f"pushing {target}: the registry holds {confirmed}, not the pushed {digest}")
    return Pushed(str(target), digest)


def _check_chunk(chunk: dict[str, Any], target: ImageRef) -> str:
    """Raise on an error chunk; return the digest when the chunk carries it."""
    error = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
    if error:
        raise PushFailed(f"pushing {target}: {_explain(str(error))}")
    aux = chunk.get("aux") or {}
    if aux.get("Digest"):
        return str(aux["Digest"])
    # Podman's compat API reports the digest only as the docker CLI prints it: `TAG: digest: D size: N`.
    said = _PUSHED_DIGEST.fullmatch(str(chunk.get("status") or ""))
    return said["digest"] if said and said["tag"] == target.tag else ""


def _explain(message: str) -> str:
    text = first_line(message)
    if "connection refused" in text or "no such host" in text:
        return f"the registry does not answer ({text}): is it running, and is the address right?"
    if "unauthorized" in text or "authentication required" in text:
        return (
            f"the registry refused the credentials ({text}): "
            "check --username/--password-stdin or `docker login`"
        )
    return f"the registry refused: {text}"


def push(
    image: str | None, to: str | None, auth: RegistryAuth | None,
    on_progress: Callable[[LayerProgress], None] | None = None,
) -> Pushed:  # fmt: skip
    """`qimg push`: the image (default: the last built) pushed as `to`, proven there, and remembered
    for run."""
    source = check_image_ref(
        state.image_argument(image, state.LAST_BUILT, "qimg push IMAGE --to REGISTRY/NAME:TAG"), "IMAGE"
    )
    target = push_target(source, to)
    pushed = push_image(engine.client(), source, target, auth, on_progress)
    state.remember(state.LAST_PUSHED, pushed.ref)
    return pushed
