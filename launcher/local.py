"""The local backend: a qimg image run on the local Docker engine the way a Qarnot task runs it.

The container gets the task's constants as its environment and DOCKER_CMD as its command, and its
port 22 is published on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from qimg.launcher.ssh import host_keys_in

if TYPE_CHECKING:
    import docker

CONTAINER_LABEL = "io.qimg.launched-by"


@dataclass(frozen=True)
class LocalContainer:
    id: str
    host: str
    port: int


def start(
    client: docker.DockerClient,
    image: str,
    command: str,
    environment: dict[str, str],
    *,
    purpose: str,
    run_tmpfs: bool = False,
    cap_drop: tuple[str, ...] = (),
) -> LocalContainer:
    container = client.containers.run(
        image,
        command=command,
        environment=environment,
        detach=True,
        ports={"22/tcp": ("127.0.0.1", 0)},  # port 0: the engine picks a free one
        labels={CONTAINER_LABEL: purpose},
        tmpfs={"/run": "mode=755"} if run_tmpfs else {},
        cap_drop=list(cap_drop),
    )
    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]
    return LocalContainer(container.id or "", binding["HostIp"], int(binding["HostPort"]))


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
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        client.containers.get(container_id).remove(force=True)
