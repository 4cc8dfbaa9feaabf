"""Containers of a qimg image on the local engine, started the way a Qarnot task starts them.

Used by the local backend (one container per instance), by `qimg check` and by the benchmarks: the
image's start command, the task's constants as environment (DOCKER_USER picks the user, as on Qarnot),
port 22 published on 127.0.0.1 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qimg.builder.labels import PREFIX
from qimg.engine_api import Engine, EngineError, NotFound, container_config
from qimg.launcher.ssh import Endpoint, host_keys_in

# Every container qimg starts carries it, with what it is for: run, check or bench.
PURPOSE_LABEL = f"{PREFIX}launched-by"


# A container's State.Status once it is over: Docker's words, and Podman's "stopped" (its container that
# exited and is not cleaned up yet, "exited" a moment later).
OVER = frozenset({"exited", "dead", "stopped"})

OUTPUT_TAIL_LINES = 8  # of a container that exited as it started: what it said last


class ContainerExited(EngineError):
    """The container ended as soon as it started: its exit code and its last lines of output."""

    def __init__(self, code: int, tail: tuple[str, ...]) -> None:
        super().__init__(0, f"the container exited with code {code} as it started")
        self.code, self.tail = code, tail


class ContainerGone(EngineError):
    """The container was removed (by someone else: a `stop` racing the launch) while it started."""

    def __init__(self) -> None:
        super().__init__(404, "the container was removed as it started")


@dataclass(frozen=True)
class Container:
    id: str
    endpoint: Endpoint  # the published port 22


def start(
    engine: Engine,
    image: str,
    command: str,
    environment: dict[str, str],
    *,
    purpose: str,
    labels: dict[str, str] | None = None,
    run_tmpfs: bool = False,
    cap_drop: tuple[str, ...] = (),
) -> Container:
    config = container_config(
        image, command, environment,
        User=environment.get("DOCKER_USER", ""),  # as Qarnot does; empty: the image's USER
        Labels={PURPOSE_LABEL: purpose, **(labels or {})},
        ExposedPorts={"22/tcp": {}},
        HostConfig={
            "PortBindings": {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},  # the engine picks a port
            "Tmpfs": {"/run": "mode=755"} if run_tmpfs else {},
            "CapDrop": list(cap_drop),
        },
    )  # fmt: skip
    container_id = engine.create(config)
    try:
        try:
            engine.start(container_id)
            inspected = engine.inspect(container_id)
        except EngineError as error:  # created, then removed before it could start or be looked at?
            if isinstance(error, NotFound) or _gone(engine, container_id):
                raise ContainerGone from None
            raise
        try:
            endpoint = published_ssh(inspected)
        except EngineError:  # an exited container has no published port on Docker: say that it exited
            raise _exited(engine, container_id, inspected) from None
        if _status(inspected) in OVER:  # Podman reports the port of an exited container too
            raise _exited(engine, container_id, inspected)
        return Container(container_id, endpoint)
    except BaseException:
        remove(engine, container_id)  # a container that did not start as asked is not left behind
        raise


def _gone(engine: Engine, container_id: str) -> bool:
    """Removed, or being removed (the engine refuses to start a container marked for removal)."""
    try:
        inspected = engine.inspect(container_id)
    except NotFound:
        return True
    except EngineError:  # the start's own refusal is the one to say
        return False
    return _status(inspected) in {"removing", "dead"}


def published_ssh(inspected: dict[str, Any]) -> Endpoint:
    """Where the engine published the container's port 22 (EngineError: it did not say)."""
    try:
        binding = inspected["NetworkSettings"]["Ports"]["22/tcp"][0]
        return Endpoint(str(binding["HostIp"]), int(binding["HostPort"]))
    except (KeyError, IndexError, TypeError, ValueError):
        raise EngineError(0, "the engine did not say where it published the container's port 22") from None


def _exited(engine: Engine, container_id: str, inspected: dict[str, Any]) -> EngineError:
    """ContainerExited when the container is over, else the engine's silence about its port."""
    state = inspected.get("State")
    code = state.get("ExitCode") if isinstance(state, dict) else None
    if not (_status(inspected) in OVER and isinstance(code, int)):
        return EngineError(0, "the engine did not say where it published the container's port 22")
    output = engine.logs(container_id, stdout=True, stderr=True)
    return ContainerExited(code, tuple(output.strip().splitlines()[-OUTPUT_TAIL_LINES:]))


def _status(inspected: dict[str, Any]) -> object:
    """The container's State.Status as the engine said it (None when it did not)."""
    state = inspected.get("State")
    return state.get("Status") if isinstance(state, dict) else None


def host_keys(engine: Engine, container_id: str) -> list[str]:
    """Host keys the start script printed on stdout (stderr is sshd's log, never trusted for keys)."""
    return host_keys_in(engine.logs(container_id))


def remove(engine: Engine, container_id: str) -> None:
    """Remove the container; one already gone, or being removed by someone else, is what we wanted."""
    try:
        engine.remove(container_id)
    except NotFound:
        return
    except EngineError as error:
        if error.status != 409:  # 409: "removal of container ... is already in progress"
            raise
