"""The DOCKER_* contract: the constants a Qarnot docker profile reads, as qimg fills them.

The local backend passes the same constants to its containers, so both backends start an image
the same way.
"""

from __future__ import annotations

import shlex
from importlib.resources import files

from qimg.builder.spec import ImageRef
from qimg.launcher.keys.read import LoginKey

# For an image qimg did not build: what qimg-start does, for root, as a fixed script. The key only
# ever comes from the DOCKER_SSH environment variable, so no value is ever quoted into a command.
FOREIGN_START = "foreign-start.sh"


def foreign_start_command() -> str:
    return "sh -c " + shlex.quote(files("qimg.images").joinpath(FOREIGN_START).read_text())


def task_constants(
    ref: ImageRef,
    key: LoginKey,
    start_command: str,
    max_seconds: int,
    registry_auth: tuple[str, str] | None,
    idle_seconds: int | None = None,
) -> dict[str, str]:
    constants = {}
    if not ref.on_hub:
        constants["DOCKER_SRV"] = ref.server_url
    constants |= {
        "DOCKER_REPO": ref.repository,
        "DOCKER_TAG": ref.tag,
        "DOCKER_SSH": key.docker_ssh,
        "DOCKER_CMD": start_command,
        "QIMG_MAX_SECONDS": str(max_seconds),
    }
    if idle_seconds:
        constants["QIMG_IDLE_STOP"] = str(idle_seconds)
    if registry_auth:
        constants["DOCKER_REGISTRY_LOGIN"], constants["DOCKER_REGISTRY_PASSWORD"] = registry_auth
    return constants
