"""Build an image from a rendered context with the Docker SDK, streaming its progress."""

from __future__ import annotations

import collections
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qimg import engine, state
from qimg.builder import distro
from qimg.builder.render import write_context
from qimg.builder.spec import ImageSpec, check_image_ref
from qimg.errors import BuildFailed

if TYPE_CHECKING:
    import docker

_STEP = re.compile(r"^Step \d+/\d+ : ")
# The classic builder's bookkeeping, which says nothing about the build itself.
_NOISE = re.compile(r"^\s*(---> |Running in |Removing intermediate container |Successfully (built|tagged) )")
_TAIL_LINES = 15


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    size: int
    user: str
    distro: str
    base: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "tag": self.tag, "size": self.size,
            "user": self.user, "distro": self.distro, "base": self.base,
        }  # fmt: skip


def default_tag(spec: ImageSpec) -> str:
    return f"qimg/{spec.login_user}:latest"


def build_image(
    client: docker.DockerClient,
    spec: ImageSpec,
    tag: str,
    *,
    no_cache: bool = False,
    pull: bool = False,
    on_step: Callable[[str], None] = lambda step: None,
    on_output: Callable[[str], None] = lambda line: None,
) -> BuiltImage:
    """Build `spec` as `tag`. Raises BuildFailed with the failing step and its last output lines."""
    from docker.errors import APIError

    step = ""
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    image_id = ""
    with tempfile.TemporaryDirectory(prefix="qimg-build-") as context:
        write_context(spec, Path(context))
        try:
            # forcerm: no container of a failed step is left behind.
            chunks = client.api.build(
                path=context, tag=tag, rm=True, forcerm=True, nocache=no_cache, pull=pull, decode=True
            )
            for chunk in chunks:
                if "error" in chunk or "errorDetail" in chunk:
                    message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
                    raise BuildFailed(
                        f"build failed at {step or 'start'}: {message.strip()}", step, tuple(tail)
                    )
                image_id = chunk.get("aux", {}).get("ID", image_id)
                for line in str(chunk.get("stream", "")).splitlines():
                    if _STEP.match(line):
                        step = line
                        tail.clear()
                        on_step(line)
                    elif line.strip() and not _NOISE.match(line):
                        tail.append(line)
                        on_output(line)
        except APIError as error:
            raise BuildFailed(f"build failed: {error.explanation or error}", step, tuple(tail)) from None
    image = client.images.get(image_id or tag)
    return BuiltImage(
        id=image.id or "", tag=tag, size=int(image.attrs.get("Size", 0)),
        user=spec.login_user, distro=spec.distro.value, base=spec.base,
    )  # fmt: skip


def build(
    spec: ImageSpec,
    distro_choice: str,
    tag: str | None,
    *,
    no_cache: bool = False,
    pull: bool = False,
    on_step: Callable[[str], None] = lambda step: None,
    on_output: Callable[[str], None] = lambda line: None,
) -> BuiltImage:
    """`qimg build`: the base image checked, its distro read when `distro_choice` is "auto", the image
    built (as `tag`, default qimg/USER:latest) and remembered for check, push and run --local."""
    image_tag = check_image_ref(tag, "--tag") if tag else default_tag(spec)
    client = engine.client()
    engine.require_image(client, spec.base, "--base")
    spec = replace(spec, distro=distro.resolve(distro_choice, spec.base, client))
    built = build_image(
        client, spec, image_tag, no_cache=no_cache, pull=pull, on_step=on_step, on_output=on_output
    )
    state.remember(state.LAST_BUILT, built.tag)
    return built
