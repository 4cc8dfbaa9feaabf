"""The Docker engine, reached through the SDK: one client, and errors turned into QimgError.

`docker` is imported here, inside functions, so that commands that do not need it (and `--help`)
start fast.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qimg.errors import DockerUnavailable, UsageError, first_line

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from docker.models.images import Image


def client() -> docker.DockerClient:
    """A client for the engine in DOCKER_HOST (default: the local socket), checked with a ping."""
    import docker
    from docker.errors import DockerException

    try:
        engine = docker.from_env(timeout=300)
        engine.ping()
    except DockerException as error:
        raise DockerUnavailable(
            f"the Docker engine does not answer ({first_line(error)}): start it, or run `make env` as root"
        ) from None
    return engine


def local_image(engine: docker.DockerClient, ref: str) -> Image:
    """An image of the local engine, or the one refusal that says how to get it."""
    from docker.errors import ImageNotFound

    try:
        return engine.images.get(ref)
    except ImageNotFound:
        raise UsageError(
            f"no local image {ref}: build one with `qimg build`, or name an existing image"
        ) from None


def image_exists(engine: docker.DockerClient, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        engine.images.get(ref)
    except ImageNotFound:
        return False
    return True


def require_image(engine: docker.DockerClient, ref: str, option: str) -> None:
    """Refuse, as a usage error, an image that is neither local nor in its registry."""
    from docker.errors import APIError

    if image_exists(engine, ref):
        return
    try:
        engine.images.get_registry_data(ref)
    except APIError:
        raise UsageError(
            f"{option} {ref}: no such image here or in its registry: check the name, or load it (docker load)"
        ) from None


def read_image_file(engine: docker.DockerClient, ref: str, path: str) -> bytes | None:
    """The content of a file in a local image (None when it has none), following symbolic links,
    without running anything."""
    return read_image_files(engine, ref, [path])[path]


def read_image_files(engine: docker.DockerClient, ref: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The contents of files in a local image, as `read_image_file`, from one container never started."""
    container = engine.containers.create(ref, command=["true"], entrypoint=[])
    try:
        return {path: _archived_file(container, path) for path in paths}
    finally:
        container.remove(force=True)


def _archived_file(container: Container, path: str) -> bytes | None:
    from docker.errors import NotFound

    for _ in range(8):  # /etc/os-release is a link to ../usr/lib/os-release on most distros
        try:
            stream, _stat = container.get_archive(path)
        except NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.next()
            if member is None:
                return None
            if member.issym():
                path = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
                continue
            content = archive.extractfile(member)
            return content.read() if content else None
    return None


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) for a registry from the Docker config (~/.docker/config.json or its
    credential helper), as `docker login` stored them; None when there are none."""
    from docker import auth
    from docker.errors import DockerException

    try:
        found = auth.load_config().resolve_authconfig(registry)
    except DockerException:
        return None
    if found and found.get("username") and found.get("password"):
        return str(found["username"]), str(found["password"])
    return None
