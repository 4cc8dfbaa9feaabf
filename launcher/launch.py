"""Launching a task and logging into it, written once above the backends (Qarnot, local).

submit -> wait (adaptive polling of the backend, a real ssh login per instance, host keys pinned) ->
record (qimg's ssh config and known_hosts). Every way out of the wait that is not success (deadline,
error state, Ctrl-C, SIGTERM, any exception) stops the task unless the user asked to keep it.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from qimg.builder.spec import LABEL_PREFIX, ImageRef
from qimg.errors import QimgError, UsageError
from qimg.launcher import sshconfig
from qimg.launcher.backend import EXECUTING, Backend, Forward, InstanceView, TaskRequest, TaskView
from qimg.launcher.keys import LoginKey
from qimg.launcher.ssh import Endpoint, host_keys_in, try_login
from qimg.launcher.sshconfig import InstanceRecord, TaskRecord

if TYPE_CHECKING:
    import docker

# Polling: fast at first, then backing off to a cap; fast again whenever the task makes progress,
# and kept fast while it executes without all its forwards (they come within seconds).
API_FIRST_PAUSE, API_GROWTH, API_MAX_PAUSE, API_FORWARD_PAUSE = 0.25, 1.6, 3.0, 0.5
PROBE_FIRST_PAUSE, PROBE_MAX_PAUSE = 0.05, 1.0
# For an image qimg did not build: what qimg-start does, for root, as a fixed script. The key only
# ever comes from the DOCKER_SSH environment variable, so no value is ever quoted into a command.
FOREIGN_START = "foreign-start.sh"


class LaunchFailed(QimgError):
    """The task failed or was stopped before it was ready; `details` says what it printed."""

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.details = details


class Interrupted(QimgError):
    """Ctrl-C, SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


@dataclass(frozen=True)
class Tunnel:
    local: int
    remote: int

    @property
    def ssh_option(self) -> tuple[str, str]:
        return "-L", f"127.0.0.1:{self.local}:127.0.0.1:{self.remote}"


def parse_tunnel(spec: str) -> Tunnel:
    match = re.fullmatch(r"(\d{1,5})(?::(\d{1,5}))?", spec)
    ports = [int(p) for p in match.groups() if p] if match else []
    if not ports or not all(0 < port < 65536 for port in ports):
        raise UsageError(f"invalid tunnel {spec!r}: expected LOCAL[:REMOTE] ports, e.g. 8888 or 8888:8888")
    return Tunnel(ports[0], ports[-1])


def check_port_free(tunnel: Tunnel) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", tunnel.local))
        except OSError:
            raise UsageError(
                f"local port {tunnel.local} is already in use: pick another, e.g. --tunnel "
                f"{tunnel.local + 1}:{tunnel.remote}"
            ) from None


def parse_duration(text: str, option: str) -> int:
    """Whole seconds from "3600", "90s", "45m", "12h" or "2d"."""
    match = re.fullmatch(r"(\d{1,7})([smhd]?)", text.strip())
    seconds = (
        int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)] if match else 0
    )
    if seconds <= 0:
        raise UsageError(f"invalid {option} {text!r}: give a duration above 0 such as 3600, 90m or 12h")
    return seconds


def foreign_start_command() -> str:
    from importlib.resources import files

    return "sh -c " + shlex.quote(files("qimg.images").joinpath(FOREIGN_START).read_text())


def task_constants(
    ref: ImageRef,
    key: LoginKey,
    start_command: str,
    max_seconds: int,
    registry_auth: tuple[str, str] | None,
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
    if registry_auth:
        constants["DOCKER_REGISTRY_LOGIN"], constants["DOCKER_REGISTRY_PASSWORD"] = registry_auth
    return constants


_STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal went away


@contextlib.contextmanager
def signals_as_errors(*, interrupt: bool = True) -> Iterator[None]:
    """SIGINT (unless `interrupt` is off), SIGTERM and SIGHUP raise Interrupted, so that every clean-up
    below runs for them. Handlers, unlike SIG_IGN, are not inherited by child processes (ssh)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    def ignore(_signum: int, _frame: FrameType | None) -> None:
        return  # Ctrl-C in an interactive session belongs to the remote shell

    handlers = {sig: handler for sig in _STOPPING_SIGNALS} | {signal.SIGINT: handler if interrupt else ignore}
    previous = {sig: signal.signal(sig, action) for sig, action in handlers.items()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While a task is being stopped: a second Ctrl-C must not leave it running."""
    signals = (signal.SIGINT, *_STOPPING_SIGNALS)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_quietly(backend: Backend, task_id: str) -> str:
    """Stop a task on the way out of a failure; returns what happened, for the user."""
    with signals_ignored():
        try:
            backend.stop(task_id)
        except QimgError as error:
            return f"could not stop task {task_id}: {error} (stop it with `qimg stop`)"
    return f"task {task_id} stopped and deleted"


StatusCallback = Callable[[TaskView, float], None]


def launch(
    backend: Backend,
    request: TaskRequest,
    key: LoginKey,
    user: str,
    timeout: float,
    *,
    keep: bool = False,
    on_status: StatusCallback | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TaskRecord:
    """Submit, wait until every instance accepts a real ssh login, pin its host key, record it."""
    note = on_note or (lambda _line: None)
    with signals_as_errors():
        task_id = backend.submit(request)
        try:
            instances = wait_ready(backend, task_id, key, user, time.monotonic() + timeout, on_status)
        except BaseException:
            if keep:
                note(f"task {task_id} kept (--keep): stop it with `qimg stop {request.name}`")
            else:
                note(stop_quietly(backend, task_id))
            raise
    record = TaskRecord(request.name, backend.name, task_id, user, str(key.identity), instances)
    sshconfig.save(record)
    return record


def wait_ready(
    backend: Backend,
    task_id: str,
    key: LoginKey,
    user: str,
    deadline: float,
    on_status: StatusCallback | None = None,
) -> list[InstanceRecord]:
    started = time.monotonic()
    api_pause, probe_pause = API_FIRST_PAUSE, PROBE_FIRST_PAUSE
    next_poll = 0.0
    ready: dict[int, InstanceRecord] = {}
    readers: dict[tuple[int, int], Callable[[], list[str]]] = {}
    last_error, last_state = "the task has not started yet", ""
    view: TaskView | None = None
    with tempfile.TemporaryDirectory(prefix="qimg-wait-") as tmp:
        while True:
            now = time.monotonic()
            if view is None or now >= next_poll:
                view = backend.view(task_id)
                if view.state != last_state or view.running != len(ready):
                    api_pause = API_FIRST_PAUSE  # progress: the forwards are near, look again soon
                last_state = view.state
                next_poll = now + api_pause
                waiting_for_forwards = view.state == EXECUTING and view.running < view.instance_count
                api_pause = min(
                    api_pause * API_GROWTH, API_FORWARD_PAUSE if waiting_for_forwards else API_MAX_PAUSE
                )
                if on_status:
                    on_status(view, now - started)
                if view.ended:
                    raise task_failure(backend, view, f"task {view.state.lower()} before ssh was ready")
            for instance in view.instances if view.state == EXECUTING else ():
                forward = instance.forward
                if forward is None or not _moved(instance, ready.get(instance.index)):
                    continue
                host_keys = readers.setdefault(
                    (instance.index, forward.port), host_key_reader(backend, task_id, instance.index)
                )
                pinned, error = pin(instance, forward, user, key.identity, Path(tmp), host_keys)
                if pinned:
                    ready[instance.index] = pinned
                else:
                    last_error = f"instance {instance.index}: {error}"
            if len(view.instances) == view.instance_count and not any(
                _moved(instance, ready.get(instance.index)) for instance in view.instances
            ):
                return [ready[index] for index in sorted(ready)]
            if time.monotonic() >= deadline:
                raise task_failure(
                    backend, view, f"not ready within the deadline ({view.state}, "
                    f"{len(ready)}/{view.instance_count} instances ready): {last_error}",
                )  # fmt: skip
            time.sleep(max(0.0, min(probe_pause, next_poll - time.monotonic())))
            probe_pause = min(probe_pause * 1.5, PROBE_MAX_PAUSE)


def _moved(instance: InstanceView, pinned: InstanceRecord | None) -> bool:
    """True while the instance has no pinned login at its current forward (none yet, or restarted)."""
    forward = instance.forward
    return forward is None or pinned is None or (pinned.host, pinned.port) != (forward.host, forward.port)


def pin(
    instance: InstanceView, forward: Forward, user: str, identity: Path, workdir: Path,
    host_keys: Callable[[], list[str]],
) -> tuple[InstanceRecord | None, str]:  # fmt: skip
    """One login attempt at the instance's forward with the keys it printed: its record, or why not."""
    known_hosts = workdir / f"known_hosts-{instance.index}"
    keys, error = try_login(Endpoint(forward.host, forward.port, user), identity, known_hosts, host_keys)
    if not keys:
        return None, error
    return InstanceRecord(instance.index, forward.host, forward.port, keys, instance.attempt), ""


def host_key_reader(backend: Backend, task_id: str, index: int) -> Callable[[], list[str]]:
    """The instance's printed host keys: its output is read until they are there, then never again."""
    found: list[str] = []

    def read() -> list[str]:
        if not found:
            found.extend(host_keys_in(backend.output(task_id, index)))
        return found

    return read


def task_failure(backend: Backend, view: TaskView, message: str) -> LaunchFailed:
    details = [f"task error: {error}" for error in view.errors]
    with contextlib.suppress(QimgError):
        tail = (backend.output(view.id) + backend.output(view.id, stderr=True)).strip().splitlines()[-8:]
        details.extend(f"output: {line}" for line in tail)
    return LaunchFailed(message, tuple(details))


def remote_command(command: str) -> str:
    """What ssh sends for --command: a login shell, so /etc/profile.d (the task's environment) is read."""
    return "sh -lc " + shlex.quote(command)


def run_over_ssh(
    record: TaskRecord,
    command: str | None,
    tunnels: tuple[Tunnel, ...] = (),
    *,
    interactive: bool = False,
) -> int:
    """An interactive session on the first instance, or the tunnels alone until Ctrl-C, or the command
    on every instance (tunnels on the first). Returns the first non-zero exit code, else 0."""
    hosts = [sshconfig.alias(record.name, instance.index) for instance in record.instances]
    forwards = [option for tunnel in tunnels for option in tunnel.ssh_option]
    if forwards:
        forwards += ["-o", "ExitOnForwardFailure=yes"]
    if interactive:
        with signals_as_errors(interrupt=False):
            return subprocess.run(
                sshconfig.ssh_argv(hosts[0], options=tuple(forwards)), check=False
            ).returncode
    if command is None:  # Ctrl-C closes the tunnels; the task keeps running
        try:
            argv = sshconfig.ssh_argv(hosts[0], options=(*forwards, "-N"))
            return subprocess.run(argv, check=False, stdin=subprocess.DEVNULL).returncode
        except KeyboardInterrupt:
            return 0
    options = [tuple(forwards)] + [()] * (len(hosts) - 1)  # the tunnels go through the first instance
    codes = [
        subprocess.run(
            sshconfig.ssh_argv(host, remote_command(command), options=host_options),
            check=False, stdin=subprocess.DEVNULL,
        ).returncode
        for host, host_options in zip(hosts, options, strict=True)
    ]  # fmt: skip
    return next((code for code in codes if code), 0)


@dataclass(frozen=True)
class ImageLogin:
    ref: ImageRef
    user: str
    start_command: str  # DOCKER_CMD


def image_login(
    client: docker.DockerClient, ref: ImageRef, user: str | None, *, on_registry: bool,
    auth: tuple[str, str] | None,
) -> ImageLogin:  # fmt: skip
    """Who logs in and what starts sshd, from the labels of a qimg image, checked to exist where the
    task will find it: the local engine, or the registry for Qarnot."""
    from docker.errors import APIError, ImageNotFound

    try:
        labels = client.images.get(str(ref)).labels or {}
    except ImageNotFound:
        if not on_registry:
            raise UsageError(
                f"no local image {ref}: build one with `qimg build`, or name an existing image"
            ) from None
        labels = {}
    if on_registry:
        credentials = {"username": auth[0], "password": auth[1]} if auth else None
        try:
            client.images.get_registry_data(str(ref), auth_config=credentials)
        except APIError:
            raise UsageError(
                f"{ref} is not in its registry (or the registry refused to say): push it with "
                "`qimg push`, or check the name"
            ) from None
    if labels.get(f"{LABEL_PREFIX}user") and labels.get(f"{LABEL_PREFIX}start"):
        image_user = labels[f"{LABEL_PREFIX}user"]
        if user and user not in {image_user, "root"}:
            raise UsageError(f"--user {user}: {ref} was built for {image_user} (and root at most)")
        return ImageLogin(ref, user or image_user, labels[f"{LABEL_PREFIX}start"])
    if user and user != "root":
        raise UsageError(
            f"--user {user}: {ref} was not built by qimg, so only root can log in: build it with "
            f"`qimg build --base {ref} --user {user}`"
        )
    return ImageLogin(ref, "root", foreign_start_command())


def refresh(backend: Backend, record: TaskRecord) -> TaskRecord:
    """Follow instances that restarted elsewhere: new forward, new host key (checked by a login)."""
    view = backend.view(record.task_id)
    if view.ended:
        raise LaunchFailed(f"task {record.name} is {view.state}: `qimg logs {record.name}` says why")
    known = {instance.index: instance for instance in record.instances}
    changed = False
    with tempfile.TemporaryDirectory(prefix="qimg-refresh-") as tmp:
        for instance in view.instances:
            forward = instance.forward
            if forward is None or not _moved(instance, known.get(instance.index)):
                continue  # not running now (nothing to pin), or where it was pinned
            reader = host_key_reader(backend, record.task_id, instance.index)
            pinned, error = pin(instance, forward, record.user, Path(record.identity), Path(tmp), reader)
            if pinned is None:
                raise LaunchFailed(
                    f"instance {instance.index} of {record.name} moved and is not ready: {error}"
                )
            known[instance.index] = pinned
            changed = True
    if changed:
        record.instances = [known[index] for index in sorted(known)]
        sshconfig.save(record)
    return record
