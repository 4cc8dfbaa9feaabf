"""A launch planned before anything is created: every option checked, the image found where the task
will find it, who logs in read from its labels, registry credentials, the task's name and request.

Bad input ends here, as a UsageError: no task is ever created for it.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from qimg import engine, state
from qimg.builder import labels
from qimg.builder.spec import ImageRef, check_user
from qimg.engine_api import Engine, labels_of
from qimg.errors import QimgError, UsageError
from qimg.launcher import account, contract, records, sshconfig, worker
from qimg.launcher.backends import qarnot_config, registry
from qimg.launcher.backends.base import ACCOUNT, Account, Backend, HardwareChoice, HardwareOffer, TaskRequest
from qimg.launcher.data import DataPlan, check_options, check_storage
from qimg.launcher.keys.read import LoginKey, read_login_key
from qimg.launcher.launch import Readiness
from qimg.launcher.options import LaunchOptions, check_timeout
from qimg.launcher.records import ForwardedPort, InstanceRecord, TaskRecord
from qimg.launcher.tunnels import Tunnel, image_tunnels, parse_tunnels

if TYPE_CHECKING:  # imported where an image is read from its registry: a local run needs none of it
    from qimg import registry_api

MAX_INSTANCES = 64


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
    wait: Readiness  # until ready (or, for a batch task, until over)
    keep: bool
    tunnels: tuple[Tunnel, ...]
    command: str | None
    connect: bool
    data: DataPlan | None = None  # buckets: inputs uploaded before, results downloaded at the end
    notes: tuple[str, ...] = ()  # what the user should know before the launch (a busy organisation quota)
    batch: bool = False  # --command is the task's own command (a profile without ssh): no login
    devcontainer: labels.DevcontainerLabels = field(default_factory=labels.DevcontainerLabels)  # checked

    def record(self, task_id: str = "", instances: Sequence[InstanceRecord] = ()) -> TaskRecord:
        """The launch's record: before the task exists (no id), once created, once every instance is
        pinned. The image's devcontainer labels go in it as they were at launch (the tunnels, each named
        by its portsAttributes label; the workspace folder and extensions `qimg code` tells)."""
        named = dict(self.devcontainer.port_labels)
        return TaskRecord(
            name=self.request.name, backend=self.backend.name, task_id=task_id, user=self.login.user,
            identity=self.login.key.identity, ppk=self.login.key.ppk, instances=list(instances),
            launch_id=self.request.launch_id,
            ports=[ForwardedPort(t.local, t.remote, named.get(t.remote)) for t in self.tunnels],
            workspace_folder=self.devcontainer.workspace_folder,
            extensions=list(self.devcontainer.extensions),
            attach_hook="postAttachCommand" in self.devcontainer.lifecycle,
        )  # fmt: skip


def parse_duration(text: str, option: str) -> int:
    """Whole seconds from "3600", "90s", "45m", "12h" or "2d"."""
    match = re.fullmatch(r"(\d{1,7})([smhd]?)", text.strip())
    seconds = (
        int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)] if match else 0
    )
    if seconds <= 0:
        raise UsageError(f"invalid {option} {text!r}: give a duration above 0 such as 3600, 90m or 12h")
    return seconds


def check_login_user(user: str) -> str:
    """--user of run: root, or a user name a qimg build could have made (not another system account)."""
    return user if user == "root" else check_user(user)


def check_registry_reachable(ref: ImageRef) -> None:
    """Qarnot's nodes pull the image themselves: a registry on this machine or its private network is
    out of their reach, unless the cluster is there too (a private deployment, a test double). Only
    the name as written is judged: a host name is not resolved here, as the nodes may resolve it
    differently."""
    host = urlsplit(f"//{ref.registry}").hostname or ""
    if qarnot_config.is_private_host(host) and not qarnot_config.settings().cluster_is_local:
        raise UsageError(
            f"{ref}: its registry {ref.registry} is on this machine or a private network, which Qarnot's "
            "nodes cannot reach: push the image to a registry they reach (`qimg push --to "
            "REGISTRY/NAME:TAG`), or run it here with --local"
        )


def registry_auth(ref: ImageRef, given: tuple[str, str] | None, on_registry: bool) -> tuple[str, str] | None:
    """What a task pulls with, `on_registry`: the credentials given, else the Docker config's for the
    image's registry, Docker Hub included. None otherwise: the engine has the image, and a container's
    environment is no place for a password."""
    if not on_registry:
        return None
    return given or engine.registry_credentials(ref.registry)


RemoteImages = Callable[[ImageRef, tuple[str, str] | None], "registry_api.RemoteImage"]


def remote_image(ref: ImageRef, auth: tuple[str, str] | None) -> registry_api.RemoteImage:
    """The image as its registry holds it, read from the registry itself (no engine needed), or the
    refusal that says how to get it there."""
    from qimg import registry_api

    found = registry_api.read_image(ref, auth)
    if found is None:
        raise UsageError(
            f"{ref} is not in its registry {ref.registry}: push it with `qimg push`, or check the name"
        )
    return found


def image_engine(ref: ImageRef, on_registry: bool, images: Engine | None) -> Engine | None:
    """Where the image is looked up: None for one a task pulls (from its registry, which the nodes
    must reach; no engine is needed), else the local engine, whose published ports must be here."""
    if on_registry:
        check_registry_reachable(ref)
        return None
    local = images or Engine.from_env()
    local.target.require_ports_here("qimg run --local")
    return local


def plan_launch(
    options: LaunchOptions, images: Engine | None = None, remote: RemoteImages = remote_image
) -> LaunchPlan:
    """Check everything, then find the image and its login; the engine (or the registry) is asked only
    after the user's own input passed. An image a task pulls is read from its registry: the engine
    is not needed then."""
    if options.connect and options.as_json:
        raise UsageError("--connect opens a terminal session: it does not go with --json")
    if options.connect and options.command is not None:
        raise UsageError("--connect opens a terminal session: it does not go with --command")
    if not 1 <= options.instances <= MAX_INSTANCES:
        raise UsageError(f"invalid --instances {options.instances}: from 1 to {MAX_INSTANCES}")
    tunnels = given_tunnels(options)
    timeout = check_timeout(options.timeout)
    max_seconds = parse_duration(options.max_time, "--max-time")
    idle_seconds = parse_duration(options.idle_stop, "--idle-stop") if options.idle_stop is not None else None
    if options.name is not None:
        records.check_task_name(options.name)
    if not options.profile.strip():
        raise UsageError("--profile is empty: the Qarnot profile, e.g. docker-network-ssh")
    if options.user is not None:
        check_login_user(options.user)
    batch = is_batch(options)
    snapshot_seconds = (
        parse_duration(options.snapshot_every, "--snapshot-every") if options.snapshot_every else 0
    )
    checked_data = check_options(options.uploads, options.results, snapshot_seconds, options.backend)
    max_queue = options.worker.max_queue
    work = worker.plan(
        options.worker, backend=options.backend, environ=os.environ,
        max_queue_seconds=parse_duration(max_queue, "--max-queue") if max_queue is not None else None,
    )  # fmt: skip
    key = read_login_key(options.key)
    sshconfig.check_login_paths(key.identity)
    on_registry = registry.registration(options.backend).pulls_from_registry
    remembered = state.LAST_PUSHED if on_registry else state.LAST_BUILT
    ref = ImageRef.parse(state.image_argument(options.image, remembered, "qimg run IMAGE"), "IMAGE")
    if ref.digest:
        raise UsageError(f"{ref}: Qarnot takes a tag (DOCKER_TAG), not a digest: run REPOSITORY:TAG")
    local_engine = image_engine(ref, on_registry, images)
    backend = registry.open_backend(options.backend)
    if checked_data is not None:
        check_storage(backend)
    auth = registry_auth(ref, options.registry_auth, on_registry)
    user, start, devcontainer = read_image(images, local_engine, ref, options.user, auth, remote)
    if not (options.tunnels or options.no_tunnel or batch):
        tunnels = image_tunnels(devcontainer.forward_ports)
    check_start(options, ref, start, batch=batch, idle=bool(idle_seconds))
    name = options.name or f"{user}-{secrets.token_hex(2)}"
    # The deadline is fixed now, at submit: an instance restarted later keeps it (--max-time is not
    # counted again from each start).
    deadline = int(time.time()) + max_seconds
    launch_id = secrets.token_hex(8)
    request = TaskRequest(
        name=name, image=str(ref), profile=options.profile, instances=options.instances,
        constants=contract.task_constants(
            ref, key, start, max_seconds=max_seconds, deadline=deadline, registry_auth=auth,
            idle_seconds=idle_seconds, batch_command=options.command if batch else None,
        ),
        launch_id=launch_id,
    )  # fmt: skip
    data_plan = checked_data.planned(name, launch_id) if checked_data else None
    if data_plan is not None:
        request = data_plan.applied(request)
    request = work.apply(request, qimg_image=start.user is None)
    request, notes, offers = host_requirements(backend, request, devcontainer.host_requirements, str(ref))
    # --timeout counts from the moment the task leaves the queue; the queue itself is bounded by
    # --max-queue (which the task also carries, as maxTimeQueueSeconds), else by --timeout too.
    wait = Readiness(
        user=user, identity=key.identity, timeout=timeout, queue_timeout=request.max_queue_seconds,
        entries=request.entries, instances=request.instances,
    )  # fmt: skip
    return LaunchPlan(
        backend=backend, request=request, login=Login(user, key), wait=wait, keep=options.keep,
        tunnels=tunnels, command=options.command, connect=options.connect, data=data_plan,
        notes=(*notes, *launch_notes(backend, request, batch, offers)), batch=batch,
        devcontainer=devcontainer,
    )  # fmt: skip


def given_tunnels(options: LaunchOptions) -> tuple[Tunnel, ...]:
    """The --tunnel options, checked; with none, the image's forwardPorts are the tunnels (read later,
    with the image), unless --no-tunnel."""
    if options.no_tunnel and options.tunnels:
        raise UsageError("--no-tunnel forwards no port: it does not go with --tunnel")
    return parse_tunnels(options.tunnels)


def read_image(
    images: Engine | None,
    local_engine: Engine | None,
    ref: ImageRef,
    user: str | None,
    auth: tuple[str, str] | None,
    remote: RemoteImages,
) -> tuple[str, contract.Start, labels.DevcontainerLabels]:
    """Who logs in, how sshd starts and the devcontainer labels, from the image's labels where the
    task finds it (its registry, no engine needed; else the local engine), read once."""
    if local_engine is None:
        found = remote(ref, auth)
        image_labels = found.labels
        user, start = remote_login(images, ref, user, found)
    else:
        image_labels = labels_of(local_engine.local_image(str(ref)))
        user, start = local_login(local_engine, ref, user, image_labels)
    return user, start, labels.read_devcontainer(image_labels, str(ref))


def check_start(
    options: LaunchOptions, ref: ImageRef, start: contract.Start, *, batch: bool, idle: bool
) -> None:
    """What needs qimg's start script, refused on an image qimg did not build (started as another user)."""
    if batch and start.user:
        raise UsageError(
            f"--profile {options.profile} has no ssh, so --command runs through the start script of images "
            f"qimg built, and {ref} is not one: build one on it with `qimg build --base {ref}`"
        )
    if idle and start.user:
        raise UsageError(
            f"--idle-stop: {ref} was not built by qimg, so nothing in it watches for ssh sessions: "
            f"build it with `qimg build --base {ref}`"
        )


def host_requirements(
    backend: Backend, request: TaskRequest, needs: labels.HostRequirements, image: str
) -> tuple[TaskRequest, tuple[str, ...], list[HardwareOffer] | None]:
    """The request fitted to the image's hostRequirements on a backend that chooses machines, what the
    user should know of them, and the account's hardware when it was asked (once per launch)."""
    if not isinstance(backend, HardwareChoice) or needs == labels.HostRequirements():
        return request, (), None
    offers = backend.hardware_offers()
    fitted, notes = account.fit_host_requirements(request, needs, offers, image)
    return fitted, notes, offers


def launch_notes(
    backend: Backend, request: TaskRequest, batch: bool, offers: list[HardwareOffer] | None = None
) -> tuple[str, ...]:
    """What the user should know before the launch; on a backend with an account, once the account
    was found to hold it (profile, hardware, quotas). `offers`: its hardware, when already asked."""
    notes = []
    if isinstance(backend, Account):
        notes = account.check_launch(backend, request, batch=batch, offers=offers)
    cluster = worker.cluster_note(request)
    return (*notes, cluster) if cluster else tuple(notes)


def is_batch(options: LaunchOptions) -> bool:
    """--command on a profile without ssh: the command is the task's own, run without a login (qimg
    waits for the task to end and prints its output). What needs a login is refused. Profiles are an
    account's: a backend without one (the local engine) runs no batch task."""
    if (
        options.command is None or account.is_ssh_profile(options.profile)
        or not registry.can(options.backend, ACCOUNT)
    ):  # fmt: skip
        return False
    for option, given in (
        ("--tunnel", bool(options.tunnels)),
        ("--idle-stop", options.idle_stop is not None),
    ):
        if given:
            raise UsageError(
                f"{option} needs an ssh login, and --profile {options.profile} has no ssh: use an ssh "
                "profile (`qimg profiles`)"
            )
    return True


def local_login(
    images: Engine, ref: ImageRef, user: str | None, image_labels: dict[str, str]
) -> tuple[str, contract.Start]:
    """Who logs in and how sshd starts, for an image the local engine runs: read from its labels there,
    an image qimg did not build checked for an OpenSSH server."""
    login = image_login(image_labels, ref, user)
    if login is None:
        check_ssh_ready(images, ref)
        return "root", contract.foreign_start()
    return login


def remote_login(
    images: Engine | None, ref: ImageRef, user: str | None, found: registry_api.RemoteImage
) -> tuple[str, contract.Start]:
    """Who logs in and how sshd starts, for an image a task pulls: from its labels in its registry. An
    image qimg did not build is checked for an OpenSSH server when the local engine has that very image
    (the check needs a container); with no engine, or another image under that name, it is not."""
    login = image_login(found.labels, ref, user)
    if login is not None:
        return login
    local = _same_local_image(images, ref, found)
    if local is not None:
        check_ssh_ready(local, ref)
    return "root", contract.foreign_start()


def _same_local_image(images: Engine | None, ref: ImageRef, found: registry_api.RemoteImage) -> Engine | None:
    """The local engine, when it answers and holds the registry's image under the name (its id is the
    configuration's digest, or with the containerd store the manifest's or the index's)."""
    try:
        images = images or Engine.from_env()
        local = images.image(str(ref))
    except QimgError:  # no engine here, or not one that answers: the launch does not need one
        return None
    same = local is not None and local.get("Id") in {found.config, found.manifest, found.digest}
    return images if same else None


def image_login(
    image_labels: dict[str, str], ref: ImageRef, user: str | None
) -> tuple[str, contract.Start] | None:
    """Who logs in and how sshd starts, from the labels of a qimg image; None for an image qimg did not
    build (root logs in), refused for --user of another account."""
    image = labels.read(image_labels, str(ref))
    if image is not None:
        if user and user not in {image.user, "root"}:
            raise UsageError(f"--user {user}: {ref} was built for {image.user} (and root at most)")
        return user or image.user, contract.Start(image.start)
    if user and user != "root":
        raise UsageError(
            f"--user {user}: {ref} was not built by qimg, so only root can log in: build it with "
            f"`qimg build --base {ref} --user {user}`"
        )
    return None


def check_ssh_ready(images: Engine, ref: ImageRef) -> None:
    """Refuse, before a (billed) start and pull, an image the foreign start script cannot run on."""
    found = images.read_image_files(str(ref), contract.FOREIGN_NEEDS)
    missing = [path for path, content in found.items() if content is None]
    if missing:
        raise UsageError(
            f"{ref} has no OpenSSH server ({' and '.join(missing)} missing): make an ssh-ready image "
            f"from it with `qimg build --base {ref}`, and run that one"
        )
