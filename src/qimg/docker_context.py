"""Which engine: the Docker CLI's own order, read from its configuration without the Docker SDK
(whose import costs every command 70 ms). `DOCKER_HOST` first, then `DOCKER_CONTEXT`, then the
`currentContext` of `$DOCKER_CONFIG/config.json` (default `~/.docker`); the context `default`, or
none, is the local socket. A context is read where `docker context create` stores it:
`contexts/meta/<sha256 of its name>/meta.json`, its `Endpoints.docker.Host`.

TLS as the CLI takes it: `DOCKER_TLS_VERIFY` with `DOCKER_CERT_PATH`'s (default: the config
folder's) ca.pem, cert.pem and key.pem, all three required (as docker-py requires them); a context's
`contexts/tls/<sha256>/docker/` files, its CA optional (the system's CAs then).

What the CLI (or docker-py's `ContextAPI`) does that this does not, each refused in one line:
- TLS without verifying the engine's certificate (`DOCKER_TLS` alone, a context's
  `SkipTLSVerify`): qimg always verifies it;
- hosts other than a unix socket, tcp or ssh (`npipe://`): refused by the transport
  (`engine_transport.check_host`) with the context's name;
- the `--context`/`--host` flags of the CLI: qimg has no such flags, the environment is the switch.
Everything read here is untrusted: a file that is not JSON, or not shaped as the CLI writes it, is
refused naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qimg.engine_transport import DEFAULT_HOST, LOCAL, EngineTarget, TlsFiles
from qimg.errors import UsageError

_MAX_FILE = 1 << 20  # a config or meta file larger than this is not one the CLI wrote


def resolve(environ: dict[str, str] | None = None) -> EngineTarget:
    """The engine every call of this process goes to."""
    env = dict(os.environ if environ is None else environ)
    config_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    if env.get("DOCKER_TLS") and not env.get("DOCKER_TLS_VERIFY"):
        raise UsageError(
            "DOCKER_TLS without DOCKER_TLS_VERIFY: qimg always verifies the engine's certificate: set "
            "DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the folder of ca.pem, cert.pem and key.pem"
        )
    host = env.get("DOCKER_HOST")
    if host:
        return EngineTarget("DOCKER_HOST", host, _env_tls(env, config_dir))
    if env.get("DOCKER_CONTEXT"):
        name, source = env["DOCKER_CONTEXT"], f"DOCKER_CONTEXT={env['DOCKER_CONTEXT']}"
    else:
        name = _current_context(config_dir / "config.json")
        source = f"the current context {name} (in {config_dir / 'config.json'})"
    if not name or name == "default":
        return EngineTarget(LOCAL, DEFAULT_HOST)
    return _context(config_dir, name, source)


def _read_json(path: Path) -> Any:
    """The file's JSON; None when there is no such file."""
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror}): fix or remove it") from None
    try:
        if len(data) > _MAX_FILE:
            raise ValueError
        return json.loads(data)
    except ValueError:
        raise UsageError(f"{path}: not a Docker configuration file (not JSON): fix or remove it") from None


def _current_context(config: Path) -> str:
    document = _read_json(config)
    if document is None:
        return ""
    name = document.get("currentContext", "") if isinstance(document, dict) else None
    if not isinstance(name, str):
        raise UsageError(f"{config}: currentContext is not a name: fix it (docker context use default)")
    return name


def _context(config_dir: Path, name: str, source: str) -> EngineTarget:
    import hashlib  # only for a named context: OpenSSL's load is 3 ms of every command on the local socket

    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest / "meta.json"
    document = _read_json(meta)
    if document is None:
        raise UsageError(
            f"{source}: no such Docker context (see `docker context ls`): "
            "create it (docker context create), or switch to one that exists (docker context use default)"
        )
    try:
        host = document["Endpoints"]["docker"]["Host"]
    except (KeyError, TypeError):
        host = None
    if not isinstance(host, str) or not host:
        raise UsageError(
            f"{meta}: context {name} names no docker endpoint: recreate it (docker context create)"
        )
    if document["Endpoints"]["docker"].get("SkipTLSVerify") is True:
        raise UsageError(
            f"context {name} ({host}) skips verifying the engine's certificate, which qimg always "
            "verifies: recreate it with the engine's CA (docker context create --docker ca=...)"
        )
    folder = config_dir / "contexts" / "tls" / digest / "docker"
    tls = None
    if folder.is_dir():
        ca, cert, key = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
        tls = TlsFiles(ca if ca.is_file() else None, *((cert, key) if cert.is_file() else (None, None)))
    return EngineTarget(f"context {name}", host, tls, context=name)


def _env_tls(env: dict[str, str], config_dir: Path) -> TlsFiles | None:
    """DOCKER_TLS_VERIFY's files, each required."""
    if not env.get("DOCKER_TLS_VERIFY"):
        return None
    folder = Path(env["DOCKER_CERT_PATH"]).expanduser() if env.get("DOCKER_CERT_PATH") else config_dir
    source = f"DOCKER_CERT_PATH={env['DOCKER_CERT_PATH']}" if env.get("DOCKER_CERT_PATH") else str(folder)
    files = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    missing = [file.name for file in files if not file.is_file()]
    if missing:
        raise UsageError(
            f"DOCKER_TLS_VERIFY is set but {source} has no {' nor '.join(missing)}: put the engine's CA "
            "(ca.pem) and your client certificate and key (cert.pem, key.pem) there, or unset "
            "DOCKER_TLS_VERIFY for an engine without TLS"
        )
    return TlsFiles(*files)


# Where the docker CLI looks for its plugins after its config's cliPluginsExtraDirs and
# $DOCKER_CONFIG/cli-plugins (the CLI's defaultSystemPluginDirs on Linux and macOS).
_SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins",
)  # fmt: skip


def cli_plugin(name: str, environ: dict[str, str] | None = None) -> Path | None:
    """The docker CLI's plugin `name` (docker-NAME) where the CLI would find it, None if it has none."""
    env = dict(os.environ if environ is None else environ)
    config_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    document = _read_json(config_dir / "config.json")
    extra = document.get("cliPluginsExtraDirs") if isinstance(document, dict) else None
    dirs = [*(d for d in extra if isinstance(d, str))] if isinstance(extra, list) else []
    for folder in (*dirs, str(config_dir / "cli-plugins"), *_SYSTEM_PLUGIN_DIRS):
        plugin = Path(folder).expanduser() / f"docker-{name}"
        if plugin.is_file() and os.access(plugin, os.X_OK):
            return plugin
    return None
