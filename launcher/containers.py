"""Containers of a qimg image on the local engine, started the way a Qarnot task starts them.

Used by the local backend (one container per instance), by `qimg check` and by the benchmarks: the
image's start command, the task's constants as environment (DOCKER_USER picks the user, as on Qarnot),
port 22 published on 127.0.0.1 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from qimg.builder.labels import PREFIX
from qimg.launcher.ssh import Endpoint, host_keys_in

if TYPE_CHECKING:
    import docker

# Every container qimg starts carries it, with what it is for: run, check or bench.
PURPOSE_LABEL = f"{PREFIX}launched-by"


@dataclass(frozen=True)
class Container:
    id: str
    endpoint: Endpoint  # the published port 22


def start(
    client: docker.DockerClient,
    image: str,
    command: str,
    environment: dict[str, str],
    *,
    purpose: str,
    labels: dict[str, str] | None = None,
    run_tmpfs: bool = False,
    cap_drop: tuple[str, ...] = (),
) -> Container:
    container = client.containers.run(
        image,
        command=command,
        environment=environment,
        user=environment.get("DOCKER_USER", ""),  # as Qarnot does; empty: the image's USER
        detach=True,
        ports={"22/tcp": ("127.0.0.1", 0)},  # port 0: the engine picks a free one
        labels={PURPOSE_LABEL: purpose, **(labels or {})},
        tmpfs={"/run": "mode=755"} if run_tmpfs else {},
        cap_drop=list(cap_drop),
    )
    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]
    return Container(container.id or "", Endpoint(binding["HostIp"], int(binding["HostPort"])))


def output(client: docker.DockerClient, container_id: str, *, stderr: bool = True) -> str:
    logs = client.containers.get(container_id).logs(stdout=True, stderr=stderr, stream=False)
    return logs.decode("utf-8", "replace")


def host_keys(client: docker.DockerClient, container_id: str) -> list[str]:
    """Host keys the start script printed on stdout (stderr is sshd's log, never trusted for keys)."""
    return host_keys_in(output(client, container_id, stderr=False))


def exec_root(client: docker.DockerClient, container_id: str, argv: list[str]) -> tuple[int, str]:
    exit_code, out = client.containers.get(container_id).exec_run(argv, user="root")
    return int(exit_code or 0), cast(bytes, out).decode("utf-8", "replace")


def remove(client: docker.DockerClient, container_id: str) -> None:
    """Remove the container; one already gone, or being removed by someone else, is what we wanted."""
    from docker.errors import APIError, NotFound

    try:
        client.containers.get(container_id).remove(force=True)
    except NotFound:
        return
    except APIError as error:
        if error.status_code != 409:  # 409: "removal of container ... is already in progress"
            raise
