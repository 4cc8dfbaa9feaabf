"""The pytest-docker suite: rendered Debian images, built and started by compose, logged into with
the real OpenSSH client against the host key each container printed.

The Docker engine, compose 1.29 and the base image come from scripts/ensure-env.sh (`make test`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from qimg.builder.render import write_context
from qimg.builder.spec import ImageSpec
from qimg.engine_api import Engine
from qimg.launcher import containers
from qimg.launcher.keys.generate import throwaway_key
from qimg.launcher.keys.read import LoginKey
from qimg.launcher.ssh import Endpoint, pinned_argv, wait_until_ready

PREFIX = "qimgtest"
# Bases imitating what users bring: ubuntu:24.04's uid-1000 user, and an account locked by useradd
# on a system where sshd runs without PAM (as on Alpine), which is when sshd refuses locked accounts.
HELPER_BASES = {
    f"{PREFIX}/base-uid1000:latest": (
        "FROM debian:bookworm-slim\nRUN useradd -l -m -u 1000 -s /bin/bash ubuntu\n"
    ),
    f"{PREFIX}/base-locked:latest": (
        "FROM debian:bookworm-slim\n"
        "RUN useradd -l -m -u 1000 alice && mkdir -p /etc/ssh/sshd_config.d"
        " && echo 'UsePAM no' > /etc/ssh/sshd_config.d/50-no-pam.conf\n"
    ),
}
EXTRA_ENV = {
    "QIMG_TEST_SETTING": 'it\'s a "quoted" $value',
    "API_TOKEN": "token-must-not-leak",
    "DOCKER_REGISTRY_PASSWORD": "password-must-not-leak",
}


@dataclass(frozen=True)
class Variant:
    spec: ImageSpec
    image: str
    compose: dict[str, Any]


ALICE = ImageSpec.create(user="alice")
VARIANTS = {
    "root": Variant(ImageSpec.create(), f"{PREFIX}/root", {}),
    "alice": Variant(ALICE, f"{PREFIX}/alice", {"environment": EXTRA_ENV}),
    "alice2": Variant(ALICE, f"{PREFIX}/alice", {}),
    "alice-hardened": Variant(ALICE, f"{PREFIX}/alice", {"tmpfs": ["/run"], "cap_drop": ["AUDIT_WRITE"]}),
    "ubuntu-like": Variant(
        ImageSpec.create(base=f"{PREFIX}/base-uid1000:latest", user="alice"), f"{PREFIX}/ubuntu-like", {}
    ),
    "sudo": Variant(ImageSpec.create(user="alice", sudo=True, packages=["less"]), f"{PREFIX}/sudo", {}),
    "locked": Variant(
        ImageSpec.create(base=f"{PREFIX}/base-locked:latest", user="alice"), f"{PREFIX}/locked", {}
    ),
    "biguid": Variant(
        ImageSpec.create(user="alice", uid=2_000_000_000, gid=2_000_000_000), f"{PREFIX}/biguid", {}
    ),
}


@pytest.fixture(scope="session")
def identity(tmp_path_factory: pytest.TempPathFactory) -> LoginKey:
    return throwaway_key(tmp_path_factory.mktemp("key"), "qimg-tests")


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return "docker-compose"  # Debian's compose 1.29; pytest-docker defaults to the v2 plugin


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up --build -d"]  # compose 1.29 has no --wait: readiness is waited for below


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"{PREFIX}{os.getpid()}"


@pytest.fixture(scope="session")
def docker_compose_file(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, identity: LoginKey
) -> str:
    root = tmp_path_factory.mktemp("compose")
    for tag, dockerfile in HELPER_BASES.items():
        (root / tag.replace("/", "_")).mkdir()
        (root / tag.replace("/", "_") / "Dockerfile").write_text(dockerfile)
        docker_client.images.build(path=str(root / tag.replace("/", "_")), tag=tag, rm=True)
    services = {}
    for name, variant in VARIANTS.items():
        context = root / variant.image.replace("/", "_")
        if not context.exists():
            write_context(variant.spec, context)
        services[name] = {
            "build": {"context": str(context)},
            "image": variant.image,
            "ports": ["127.0.0.1::22"],
            **variant.compose,
            # compose interpolates $NAME in the file: $$ is a literal $
            "environment": {
                name: value.replace("$", "$$")
                for name, value in {
                    "DOCKER_SSH": identity.docker_ssh,
                    **variant.compose.get("environment", {}),
                }.items()
            },
        }
    compose_file = root / "docker-compose.yml"
    compose_file.write_text(json.dumps({"version": "2.4", "services": services}, indent=1))
    return str(compose_file)


@dataclass(frozen=True)
class Login:
    """A running service, ready for ssh, with its printed host key pinned."""

    container_id: str
    endpoint: Endpoint
    user: str
    identity: Path
    known_hosts: Path
    host_keys: tuple[str, ...]

    def argv(self, *command: str, user: str | None = None, options: tuple[str, ...] = ()) -> list[str]:
        return pinned_argv(
            self.endpoint, user or self.user, self.identity, self.known_hosts, *command, options=options
        )

    def ssh(
        self, *command: str, user: str | None = None, options: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*command, user=user, options=options),
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
        )  # fmt: skip


@pytest.fixture(scope="session")
def login(
    docker_services: Any,
    docker_compose_project_name: str,
    docker_client: docker.DockerClient,
    engine: Engine,
    identity: LoginKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], Login]]:
    ready: dict[str, Login] = {}

    def get(service: str) -> Login:
        if service not in ready:
            compose_labels = [
                f"com.docker.compose.project={docker_compose_project_name}",
                f"com.docker.compose.service={service}",
            ]
            (container,) = docker_client.containers.list(filters={"label": compose_labels})
            port = docker_services.port_for(service, 22)
            endpoint = Endpoint("127.0.0.1", port)
            user = VARIANTS[service].spec.login_user
            known_hosts = tmp_path_factory.mktemp(service) / "known_hosts"
            keys = wait_until_ready(
                endpoint, user, identity.identity, known_hosts,
                lambda: containers.host_keys(engine, container.id or ""), time.monotonic() + 60,
            )  # fmt: skip
            ready[service] = Login(
                container.id or "", endpoint, user, identity.identity, known_hosts, tuple(keys)
            )
        return ready[service]

    yield get


def exec_root(client: docker.DockerClient, container_id: str, command: str) -> str:
    """The output of a shell command run as root in the container (through the SDK: an observer
    independent of the launcher's own engine client)."""
    code, out = client.containers.get(container_id).exec_run(["sh", "-c", command], user="root")
    assert code == 0, out
    assert isinstance(out, bytes)
    return out.decode("utf-8", "replace")
