"""The Docker engine through the Docker SDK: push, a build whose base must be pulled, and the
credentials `docker login` stored. Everything else goes through `engine_api`, without the SDK.

`docker` is imported here, inside functions, so that commands that do not need it (and `--help`)
start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qimg import docker_context
from qimg.engine_api import Engine
from qimg.engine_transport import unanswered
from qimg.errors import DockerUnavailable, first_line

if TYPE_CHECKING:
    import docker


def client() -> docker.DockerClient:
    """A client for the engine every other call of this command reaches (`docker_context`: not
    `docker.from_env`, which ignores contexts), checked with a ping."""
    import docker
    from docker.errors import DockerException

    target = docker_context.resolve()
    version = Engine(target).api_version()  # the fast path's, negotiated once for the command
    try:
        engine = docker.DockerClient(base_url=target.host, version=version, timeout=300)
        engine.ping()
    except DockerException as error:
        raise DockerUnavailable(unanswered(target, first_line(error))) from None
    return engine


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
