"""Engines reached over TLS and ssh, as the docker CLI reaches them: every command works through them
(the fast path and the SDK's build alike), with the docker CLI itself as the reference that the set-up
is a real one, and each fault is one line that starts nothing.

- TLS: the local engine behind a front that requires a client certificate (`dockerd --tlsverify`'s
  handshake), with DOCKER_TLS_VERIFY and a relative DOCKER_CERT_PATH, and through a TLS context made
  by `docker context create`.
- ssh: a container of a qimg image whose login user may use the engine's socket (mounted, with the
  docker CLI), reached as `ssh://alice@127.0.0.1:PORT` with the user's ssh configuration. OpenSSH reads
  its configuration from the passwd entry's home, never $HOME, so the test's configuration is given by
  an `ssh` first on PATH that adds `-F` to the real one: the same for qimg and for the docker CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from qimg.engine_api import Engine
from qimg.launcher import containers
from qimg.launcher.ssh import Endpoint, wait_until_ready
from tests.e2e.conftest import User
from tests.helpers import assert_one_line_error, engine_commands
from tests.remote_engines import ENGINE_SOCKET, Certificates, make_certificates, tls_front

pytestmark = pytest.mark.docker
DOCKER_CLI = shutil.which("docker") or "docker"
NEVER_BUILT = "qimgtest/remote-never-built:1"
PURPOSE = "io.qimg.purpose"


def docker_cli(user: User, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The reference: the docker CLI with the same environment, from the same folder."""
    return subprocess.run(
        [DOCKER_CLI, *args], capture_output=True, text=True, env={**os.environ, **user.env, **env},
        cwd=user.workdir, timeout=120, check=False,
    )  # fmt: skip


def qimg_containers(client: docker.DockerClient) -> list[str]:
    return [c.id or "" for c in client.containers.list(all=True, filters={"label": PURPOSE})]


def as_user(user: User, env: dict[str, str]) -> User:
    return User(user.home, {**user.env, **env})


def every_command_works(user: User, image: str, engine_named: str) -> None:
    """build (with BuildKit: docker buildx), check, run --local, ls --local and stop --local (the fast
    path), each through the engine under test, which each names."""
    built = user.qimg("build", "--user", "alice", "--package", "busybox", "--tag", image)
    assert built.returncode == 0, built.stderr
    assert engine_named in built.stdout
    assert built.stdout.strip().endswith("with BuildKit"), "buildx reaches the same engine"
    ran = user.qimg("run", "--local", image, "--command", "id -un")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[0] == "alice"
    kept = user.qimg("run", "--local", image, "--name", "kept", "--keep", "--json")
    assert kept.returncode == 0, kept.stderr
    listed = user.qimg("ls", "--local")
    assert "kept" in listed.stdout and engine_named in listed.stdout, listed.stdout
    assert user.qimg("stop", "--all", "--local").returncode == 0
    assert "kept" not in user.qimg("ls", "--local").stdout
    checked = user.qimg("check", image)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert engine_named in checked.stdout


# TLS


@dataclass
class TlsEngine:
    host: str
    certificates: Certificates
    handshakes: list[str]


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEngine]:
    certificates = make_certificates(tmp_path_factory.mktemp("tls") / "certs")
    handshakes: list[str] = []
    with tls_front(certificates, handshakes) as host:
        yield TlsEngine(host, certificates, handshakes)


def cert_path(user: User, certificates: Certificates, name: str = "certs") -> str:
    """The client's files copied where a user keeps them, named relative to their working folder."""
    folder = user.workdir / name
    folder.mkdir()
    for file in ("ca.pem", "cert.pem", "key.pem"):
        shutil.copy(certificates.folder / file, folder / file)
    return name


def test_a_tls_engine_serves_every_command(user: User, tls_engine: TlsEngine) -> None:
    env = {"DOCKER_HOST": tls_engine.host, "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": cert_path(user, tls_engine.certificates)}  # fmt: skip
    assert docker_cli(user, env, "version").returncode == 0  # the set-up is one the CLI takes
    before = len(tls_engine.handshakes)
    every_command_works(as_user(user, env), "qimgtest/remote-tls:1", f"DOCKER_HOST={tls_engine.host}")
    assert len(tls_engine.handshakes) > before + 10  # every command went through the front


def test_a_tls_context_serves_every_command(user: User, tls_engine: TlsEngine) -> None:
    files = tls_engine.certificates.folder
    created = docker_cli(
        user, {}, "context", "create", "secure", "--docker",
        f"host={tls_engine.host},ca={files}/ca.pem,cert={files}/cert.pem,key={files}/key.pem",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    env = {"DOCKER_CONTEXT": "secure"}
    assert docker_cli(user, env, "version").returncode == 0
    before = len(tls_engine.handshakes)
    every_command_works(as_user(user, env), "qimgtest/remote-tls:1", f"context secure ({tls_engine.host})")
    assert len(tls_engine.handshakes) > before + 10


def other_certificates(user: User) -> Certificates:
    return make_certificates(user.home / "other-ca")


@pytest.mark.parametrize("command", list(engine_commands(NEVER_BUILT)))
@pytest.mark.parametrize(
    ("fault", "code", "expected"),
    [
        ("no client certificate", 2, "has no cert.pem: put the engine's CA"),
        ("a client certificate of another CA", 1, "refused the TLS handshake"),
        ("the engine's certificate not signed by the CA", 1, "CERTIFICATE_VERIFY_FAILED"),
        ("no TLS to a TLS engine", 1, "does not answer at tcp://127.0.0.1"),
    ],
)
def test_tls_faults_are_one_line_and_start_nothing(
    user: User, tls_engine: TlsEngine, docker_client: docker.DockerClient, fault: str, code: int,
    expected: str, command: str,
) -> None:  # fmt: skip
    folder = user.workdir / cert_path(user, tls_engine.certificates)
    env = {"DOCKER_HOST": tls_engine.host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "certs"}
    if fault == "no client certificate":
        (folder / "cert.pem").unlink()
    elif fault == "a client certificate of another CA":
        other = other_certificates(user)
        shutil.copy(other.folder / "cert.pem", folder / "cert.pem")
        shutil.copy(other.folder / "key.pem", folder / "key.pem")
    elif fault == "the engine's certificate not signed by the CA":
        shutil.copy(other_certificates(user).folder / "ca.pem", folder / "ca.pem")
    else:
        del env["DOCKER_TLS_VERIFY"], env["DOCKER_CERT_PATH"]
    before = qimg_containers(docker_client)
    result = as_user(user, env).qimg(*engine_commands(NEVER_BUILT)[command])
    assert_one_line_error(result, code, expected)
    assert qimg_containers(docker_client) == before
    assert not docker_client.images.list(name=NEVER_BUILT)


# ssh


@dataclass(frozen=True)
class SshEngine:
    host: str  # ssh://alice@127.0.0.1:PORT
    env: dict[str, str]  # PATH with the configured ssh first


@pytest.fixture(scope="module")
def ssh_engine_host(
    e2e_image: str,
    docker_client: docker.DockerClient,
    engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Endpoint, Path, Path]]:
    """A machine with an engine and sshd: alice's qimg image, the engine's socket and the docker CLI
    mounted, alice in the socket's group (in /etc/group: sshd gives a login the groups found there).
    Yields its endpoint, alice's key and the pinned known_hosts."""
    folder = tmp_path_factory.mktemp("ssh-engine")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    container = docker_client.containers.run(
        e2e_image, detach=True, environment={"DOCKER_SSH": (folder / "id_ed25519.pub").read_text().strip()},
        ports={"22/tcp": ("127.0.0.1", 0)},
        volumes={ENGINE_SOCKET: {"bind": ENGINE_SOCKET, "mode": "rw"},
                 os.path.realpath(DOCKER_CLI): {"bind": "/usr/bin/docker", "mode": "ro"}},
        labels={"qimgtest.remote-engine": "ssh"},
    )  # fmt: skip
    try:
        group = f"groupadd -g {os.stat(ENGINE_SOCKET).st_gid} engine && usermod -aG engine alice"
        assert container.exec_run(["sh", "-c", group], user="root").exit_code == 0
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        endpoint, known_hosts = Endpoint("127.0.0.1", port), folder / "known_hosts"
        wait_until_ready(
            endpoint, "alice", key, known_hosts,
            lambda: containers.host_keys(engine, container.id or ""), time.monotonic() + 60,
        )  # fmt: skip
        yield endpoint, key, known_hosts
    finally:
        container.remove(force=True)


@pytest.fixture
def ssh_engine(ssh_engine_host: tuple[Endpoint, Path, Path], user: User) -> SshEngine:
    """The user's ssh configuration for the engine host (its key, its pinned host key, an alias), and
    the `ssh` that reads it."""
    endpoint, key, known_hosts = ssh_engine_host
    config = user.home / "ssh-config"
    config.write_text(
        f"Host gpu-box\n  HostName {endpoint.host}\n  Port {endpoint.port}\n  User alice\n"
        f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n"
        "  StrictHostKeyChecking yes\n"
    )
    shim = user.home / "bin"
    shim.mkdir()
    (shim / "ssh").write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {config} "$@"\n')
    (shim / "ssh").chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}"}
    return SshEngine(f"ssh://alice@{endpoint.host}:{endpoint.port}", env)


def test_an_ssh_engine_serves_every_command(user: User, ssh_engine: SshEngine) -> None:
    env = {**ssh_engine.env, "DOCKER_HOST": ssh_engine.host}
    assert docker_cli(user, env, "version").returncode == 0
    every_command_works(as_user(user, env), "qimgtest/remote-ssh:1", f"DOCKER_HOST={ssh_engine.host}")


@pytest.mark.parametrize("command", ["run", "check"])
def test_an_engine_on_another_machine_refuses_logins_in_one_line(
    user: User, ssh_engine: SshEngine, e2e_image: str, docker_client: docker.DockerClient, command: str
) -> None:
    """`gpu-box` is an alias: as far as qimg knows, another machine, whose loopback the published ssh
    port is on. ls and build work; run --local and check cannot log in, and say so before starting."""
    env = {**ssh_engine.env, "DOCKER_HOST": "ssh://gpu-box"}
    assert docker_cli(user, env, "version").returncode == 0
    remote = as_user(user, env)
    assert remote.qimg("ls", "--local").returncode == 0
    before = qimg_containers(docker_client)
    argv = ("run", "--local", e2e_image, "--command", "true") if command == "run" else ("check", e2e_image)
    assert_one_line_error(remote.qimg(*argv), 2, "DOCKER_HOST=ssh://gpu-box publishes", "run qimg on gpu-box")
    assert qimg_containers(docker_client) == before


@pytest.mark.parametrize("command", list(engine_commands(NEVER_BUILT)))
def test_an_ssh_engine_that_refuses_the_login_is_one_line(
    user: User, ssh_engine: SshEngine, docker_client: docker.DockerClient, command: str
) -> None:
    env = {**ssh_engine.env, "DOCKER_HOST": ssh_engine.host.replace("alice@", "bob@")}
    before = qimg_containers(docker_client)
    result = as_user(user, env).qimg(*engine_commands(NEVER_BUILT)[command])
    assert_one_line_error(result, 1, "does not answer at ssh://bob@", "ssh: ", "Permission denied")
    assert qimg_containers(docker_client) == before
