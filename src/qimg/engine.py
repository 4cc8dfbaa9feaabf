"""The Docker engine through the Docker SDK: push, a build whose base must be pulled, and the
credentials `docker login` stored. Everything else goes through `engine_api`, without the SDK.

`docker` is imported here, inside functions, so that commands that do not need it (and `--help`)
start fast.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from qimg import docker_context
from qimg.engine_api import Engine
from qimg.engine_transport import EngineTarget, SshRelay, unanswered
from qimg.errors import DockerUnavailable, first_line

if TYPE_CHECKING:
    import docker


def client() -> docker.DockerClient:
    """A client for the engine every other call of this command reaches (`docker_context`: not
    `docker.from_env`, which ignores contexts), checked with a ping."""
    import docker
    from docker.errors import DockerException
    from requests import RequestException

    target = docker_context.resolve()
    version = Engine(target).api_version()  # the fast path's, negotiated once for the command
    try:
        engine = docker.DockerClient(version=version, timeout=300, **_reaching(target))
        # requests would otherwise trade the engine's CA for REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
        # when set (as many corporate machines set them), and send the engine's calls to a proxy.
        engine.api.trust_env = False
        engine.ping()
    except (DockerException, RequestException) as error:
        raise DockerUnavailable(unanswered(target, first_line(error))) from None
    return engine


def _reaching(target: EngineTarget) -> dict[str, Any]:
    """How the SDK reaches the engine: its host, TLS as the fast path does it, and for ssh a relay
    socket (the SDK's own ssh transport needs paramiko, and would not read ssh's configuration as
    the CLI does)."""
    from docker.tls import TLSConfig

    if target.host.startswith("ssh://"):
        return {"base_url": _ssh_relay(target).host}
    if target.tls is None:
        return {"base_url": target.host}
    tls = target.tls
    client_cert = (str(tls.cert), str(tls.key)) if tls.cert and tls.key else None
    return {
        "base_url": target.host,
        "tls": TLSConfig(client_cert=client_cert, ca_cert=str(tls.ca) if tls.ca else None, verify=True),
    }


@cache
def _ssh_relay(target: EngineTarget) -> SshRelay:
    return SshRelay(target)  # one per process and engine; its socket goes with the process


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) for a registry from the Docker config (~/.docker/config.json or its
    credential helper), as `docker login` stored them; None when there are none."""
    from docker import auth
    from docker.errors import DockerException

    try:
        found = auth.load_config().resolve_authconfig(registry)
    except DockerException:
        return None
    if found and found.get("username") and found.get("password"):
        return str(found["username"]), str(found["password"])
    return None
