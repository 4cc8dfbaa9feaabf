"""The DOCKER_* contract: the constants a Qarnot docker profile reads, as qimg fills them, checked
against what Qarnot accepts before anything is sent.

The local backend passes the same constants to its containers (DOCKER_USER included), so both
backends start an image the same way.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from qimg.builder.spec import ImageRef
from qimg.errors import UsageError
from qimg.launcher.backends.base import IDLE_STOP_CONSTANT
from qimg.launcher.keys.read import LoginKey

# For an image qimg did not build: what qimg-start does, for root, as a fixed script. Data only ever
# comes from environment variables (DOCKER_SSH, QIMG_DEADLINE, ...): no value is quoted into a command.
FOREIGN_START = "foreign-start.sh"
# What that script runs, by absolute path: an image without them cannot start an ssh task.
FOREIGN_NEEDS = ("/usr/sbin/sshd", "/usr/bin/ssh-keygen")
# Qarnot's limits on constants (its API model documentation).
MAX_CONSTANTS = 150
MAX_LENGTH = 2048  # characters, of a key and of a value
_KEY = re.compile(r"[A-Za-z0-9_.-]+")
# Qarnot replaces ${NAME} in constants with task values before the container starts.
SUBSTITUTED = "${"
# Write-only: reading the task back (SDK, console) shows [SECRET], as Qarnot's own samples send it.
SECRET_PASSWORD = "QARNOT_SECRET__DOCKER_REGISTRY_PASSWORD"
# A batch task's command (`run --command` on a profile without ssh), run by qimg-start instead of sshd.
BATCH_COMMAND = "QIMG_COMMAND"
# How to fix a constant Qarnot would refuse or rewrite, for the ones whose value the user chooses;
# the others come from a checked image reference, checked labels or qimg's own script.
_TOO_LONG_FIX = {
    "DOCKER_SSH": "pass fewer keys, shorter key comments, or an ed25519 key (`qimg keygen`), whose line "
    "is about 100 characters",
    "DOCKER_REGISTRY_LOGIN": "use a shorter registry user name",
    SECRET_PASSWORD: "use a shorter registry password or access token",
    BATCH_COMMAND: "put the command in a script of the image (or --upload it) and run that",
}
_SUBSTITUTED_FIX = {
    "DOCKER_SSH": "remove it from the key's comment (--key)",
    "DOCKER_REGISTRY_LOGIN": "use a registry user name without it",
    SECRET_PASSWORD: "use a registry password or access token without it",
    BATCH_COMMAND: "write $NAME instead of ${NAME}, or put the command in a script",
}


@dataclass(frozen=True)
class Start:
    """How a task starts sshd: DOCKER_CMD, and DOCKER_USER when the image's own USER will not do."""

    command: str
    user: str | None = None


def foreign_start() -> Start:
    """For an image qimg did not build, whatever its USER: the script writes root's keys and runs
    sshd, which needs root."""
    from importlib.resources import files  # only for such an image

    script = files("qimg.images").joinpath(FOREIGN_START).read_text()
    # Comments stay in the file: the constant, at most MAX_LENGTH characters, carries the commands.
    commands = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    return Start("sh -c " + shlex.quote(commands), user="root")


def task_constants(
    ref: ImageRef,
    key: LoginKey,
    start: Start,
    max_seconds: int,
    deadline: int,
    registry_auth: tuple[str, str] | None,
    idle_seconds: int | None = None,
    batch_command: str | None = None,
) -> dict[str, str]:
    """The constants of a task, checked. `deadline` (Unix seconds) holds for every attempt of an
    instance; `max_seconds` is what start scripts without deadline support fall back on. A batch
    task's command (a profile without ssh) is run by qimg-start instead of sshd."""
    constants = {}
    if not ref.on_hub:
        constants["DOCKER_SRV"] = ref.server_url
    constants |= {
        "DOCKER_REPO": ref.repository,
        "DOCKER_TAG": ref.tag,
        "DOCKER_SSH": key.docker_ssh,
        "DOCKER_CMD": start.command,
        "QIMG_MAX_SECONDS": str(max_seconds),
        "QIMG_DEADLINE": str(deadline),
    }
    if start.user:
        constants["DOCKER_USER"] = start.user
    if idle_seconds:
        constants[IDLE_STOP_CONSTANT] = str(idle_seconds)
    if batch_command is not None:
        constants[BATCH_COMMAND] = batch_command
    if registry_auth:
        constants["DOCKER_REGISTRY_LOGIN"], constants[SECRET_PASSWORD] = registry_auth
    check_constants(constants)
    return constants


def check_constants(constants: dict[str, str]) -> None:
    """Refuse, before anything is sent, what Qarnot would refuse or rewrite. Messages name the
    constant and never show a value: one of them is a password."""
    if len(constants) > MAX_CONSTANTS:
        raise UsageError(f"{len(constants)} task constants, over Qarnot's limit of {MAX_CONSTANTS}")
    for name, value in constants.items():
        if len(name) > MAX_LENGTH or not _KEY.fullmatch(name):
            raise UsageError(
                f"task constant name {name[:60]!r}: Qarnot takes up to {MAX_LENGTH} characters "
                "among a-z A-Z 0-9 _ - ."
            )
        if len(value) > MAX_LENGTH:
            fix = _TOO_LONG_FIX.get(name, "shorten what it is made from")
            raise UsageError(
                f"{name} would be {len(value)} characters, over Qarnot's limit of {MAX_LENGTH} per "
                f"constant: {fix}"
            )
        if SUBSTITUTED in value:
            fix = _SUBSTITUTED_FIX.get(name, "remove it from what it is made from")
            raise UsageError(
                f"{name} contains '{SUBSTITUTED}', which Qarnot replaces with a task value before the "
                f"container starts: {fix}"
            )
