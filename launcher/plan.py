"""A launch planned before anything is created: every option checked, the image found where the task
will find it, who logs in read from its labels, registry credentials, the task's name and request.

Bad input ends here, as a UsageError: no task is ever created for it.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qimg import engine, state
from qimg.builder import labels
from qimg.builder.spec import ImageRef
from qimg.errors import UsageError
from qimg.launcher import account, contract, records, tasks, worker
from qimg.launcher.backends.base import Backend, TaskRequest
from qimg.launcher.keys.read import LoginKey, read_login_key
from qimg.launcher.tunnels import Tunnel, parse_tunnels
from qimg.launcher.worker import WorkerOptions

if TYPE_CHECKING:
    import docker

DEFAULT_PROFILE = "docker-network-ssh"


@dataclass(frozen=True)
class LaunchOptions:
    """What the user asked for, unchecked."""

    image: str | None = None  # default: the last pushed, or with `local` the last built
    local: bool = False
    key: Path | None = None
    user: str | None = None
    instances: int = 1
    name: str | None = None
    profile: str = DEFAULT_PROFILE
    tunnels: tuple[str, ...] = ()
    connect: bool = False
    command: str | None = None
    timeout: float = 600.0
    max_time: str = "12h"
    keep: bool = False
    registry_auth: tuple[str, str] | None = None  # (username, password)
    worker: WorkerOptions = field(default_factory=WorkerOptions)  # environment, secrets, hardware, scheduling


@dataclass(frozen=True)
class Login:
    """Who logs into the task's instances, and with which key."""

    user: str
    key: LoginKey


@dataclass(frozen=True)
class LaunchPlan:
    backend: Backend
    request: TaskRequest
    login: Login
    timeout: float
    keep: bool
    tunnels: tuple[Tunnel, ...]
    command: str | None
    connect: bool


def parse_duration(text: str, option: str) -> int:
    """Whole seconds from "3600", "90s", "45m", "12h" or "2d"."""
    match = re.fullmatch(r"(\d{1,7})([smhd]?)", text.strip())
    seconds = (
        int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)] if match else 0
    )
    if seconds <= 0:
        raise UsageError(f"invalid {option} {text!r}: give a duration above 0 such as 3600, 90m or 12h")
    return seconds


def check_timeout(seconds: float) -> float:
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"invalid --timeout {seconds}: give a number of seconds above 0")
    return seconds


def plan_launch(options: LaunchOptions, client: docker.DockerClient | None = None) -> LaunchPlan:
    """Check everything, then find the image and its login; the engine is asked only after the
    user's own input passed."""
    if options.connect and options.command is not None:
        raise UsageError("--connect opens a terminal session: it does not go with --command")
    if not 1 <= options.instances <= 64:
        raise UsageError(f"invalid --instances {options.instances}: from 1 to 64")
    tunnels = parse_tunnels(options.tunnels)
    timeout = check_timeout(options.timeout)
    max_seconds = parse_duration(options.max_time, "--max-time")
    if options.name is not None:
        records.check_task_name(options.name)
    if not options.profile.strip():
        raise UsageError("--profile is empty: the Qarnot profile, e.g. docker-network-ssh")
    max_queue = options.worker.max_queue
    work = worker.plan(
        options.worker, local=options.local, environ=os.environ,
        max_queue_seconds=parse_duration(max_queue, "--max-queue") if max_queue is not None else None,
    )  # fmt: skip
    key = read_login_key(options.key)
    remembered = state.LAST_BUILT if options.local else state.LAST_PUSHED
    ref = ImageRef.parse(state.image_argument(options.image, remembered, "qimg run IMAGE"), "IMAGE")
    if ref.digest:
        raise UsageError(f"{ref}: Qarnot takes a tag (DOCKER_TAG), not a digest: run REPOSITORY:TAG")

    client = client or engine.client()
    backend = tasks.open_backend(tasks.backend_name(options.local), client)
    auth = options.registry_auth
    if auth is None and not options.local and not ref.on_hub:
        auth = engine.registry_credentials(ref.registry)
    user, start_command = image_login(client, ref, options.user, on_registry=not options.local, auth=auth)
    name = options.name or f"{user}-{secrets.token_hex(2)}"
    request = TaskRequest(
        name, str(ref), options.profile, options.instances,
        contract.task_constants(ref, key, start_command, max_seconds, auth), secrets.token_hex(8),
    )  # fmt: skip
    request = work.apply(request, qimg_image=start_command != contract.foreign_start_command())
    if isinstance(backend, account.AccountBackend):  # Qarnot: the account can hold this launch
        account.check_launch(backend, request)
    return LaunchPlan(
        backend, request, Login(user, key), timeout, options.keep, tunnels, options.command, options.connect
    )


def image_login(
    client: docker.DockerClient, ref: ImageRef, user: str | None, *, on_registry: bool,
    auth: tuple[str, str] | None,
) -> tuple[str, str]:  # fmt: skip
    """Who logs in and what starts sshd (DOCKER_CMD), from the labels of a qimg image, checked to exist
    where the task will find it: the local engine, or the registry for Qarnot."""
    from docker.errors import APIError, ImageNotFound

    if on_registry:
        try:
            found = client.images.get(str(ref)).labels
        except ImageNotFound:
            found = {}
        credentials = {"username": auth[0], "password": auth[1]} if auth else None
        try:
            client.images.get_registry_data(str(ref), auth_config=credentials)
        except APIError:
            raise UsageError(
                f"{ref} is not in its registry (or the registry refused to say): push it with "
                "`qimg push`, or check the name"
            ) from None
    else:
        found = engine.local_image(client, str(ref)).labels
    image = labels.read(found, str(ref))
    if image is not None:
        if user and user not in {image.user, "root"}:
            raise UsageError(f"--user {user}: {ref} was built for {image.user} (and root at most)")
        return user or image.user, image.start
    if user and user != "root":
        raise UsageError(
            f"--user {user}: {ref} was not built by qimg, so only root can log in: build it with "
            f"`qimg build --base {ref} --user {user}`"
        )
    return "root", contract.foreign_start_command()
