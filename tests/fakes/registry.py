"""A real registry for tests and benchmarks: Debian's docker-registry on 127.0.0.1, open, with
htpasswd auth (`htpasswd` from apache2-utils), or with token auth (a token service of the tests':
`registry_tokens`), serving from a folder of the caller's."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from qimg.launcher.ssh import free_local_port
from tests.fakes.registry_tokens import ISSUER, SERVICE, TokenService, serve_tokens

REGISTRY_USER = "qimg-tester"
REGISTRY_PASSWORD = "s3cret-registry-password"
# The options that log `qimg run`/`push` into this registry (the password on stdin).
LOGIN = ("--username", REGISTRY_USER, "--password-stdin")


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    auth: bool
    root: Path  # its configuration; its storage under data/
    tokens: TokenService | None = None  # with token auth

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"


@contextlib.contextmanager
def serve_registry(root: Path, auth: bool, token: bool = False) -> Iterator[Registry]:
    """The registry; `auth`: the tester's credentials needed, checked by htpasswd or (`token`) by the
    token service."""
    with contextlib.ExitStack() as stack:
        tokens = (
            stack.enter_context(serve_tokens(root / "tokens.pem", REGISTRY_USER, REGISTRY_PASSWORD))
            if token
            else None
        )
        yield stack.enter_context(_registry(root, auth, tokens))


@contextlib.contextmanager
def _registry(root: Path, auth: bool, tokens: TokenService | None) -> Iterator[Registry]:
    port = free_local_port()
    config = root / "config.yml"
    lines = [
        "version: 0.1",
        "log: {level: error}",
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}",
        f"http: {{addr: 127.0.0.1:{port}}}",
    ]
    if tokens is not None:
        lines.append(
            f"auth: {{token: {{realm: '{tokens.realm}', service: {SERVICE}, issuer: {ISSUER}, "
            f"rootcertbundle: {root / 'tokens.pem'}}}}}"
        )
    elif auth:
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], capture_output=True, text=True, check=True
        ).stdout
        (root / "htpasswd").write_text(htpasswd)
        lines.append(f"auth: {{htpasswd: {{realm: qimg-tests, path: {root / 'htpasswd'}}}}}")
    config.write_text("\n".join(lines) + "\n")
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None and time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", auth, root, tokens)
    finally:
        server.terminate()
        server.wait(timeout=30)


def put_blob(registry: Registry, repository: str, data: bytes) -> str:
    """Upload a blob to an open registry (monolithic upload): its digest."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    started = urllib.request.urlopen(
        urllib.request.Request(f"http://{registry.host}/v2/{repository}/blobs/uploads/", method="POST")
    )
    location = urljoin(f"http://{registry.host}/", started.headers["Location"])
    separator = "&" if "?" in location else "?"
    urllib.request.urlopen(
        urllib.request.Request(
            f"{location}{separator}digest={digest}",
            data=data,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
    )
    return digest


def put_manifest(registry: Registry, repository: str, reference: str, document: dict[str, Any]) -> str:
    """Upload a manifest or an index (its own mediaType says which) to an open registry: its digest."""
    body = json.dumps(document).encode()
    urllib.request.urlopen(
        urllib.request.Request(
            f"http://{registry.host}/v2/{repository}/manifests/{reference}",
            data=body,
            method="PUT",
            headers={"Content-Type": document["mediaType"]},
        )
    )
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def put_image(
    registry: Registry, repository: str, reference: str, labels: dict[str, str],
    platform: tuple[str, str] = ("linux", "amd64"), oci: bool = False,
) -> tuple[str, str]:  # fmt: skip
    """An image without layers (a configuration with `labels`), uploaded: its manifest's and its
    configuration's digests."""
    config = json.dumps(
        {"os": platform[0], "architecture": platform[1], "config": {"Labels": labels},
         "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()  # fmt: skip
    config_digest = put_blob(registry, repository, config)
    kind = "oci.image" if oci else "docker.container.image"
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json" if oci
        else "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": f"application/vnd.{kind}{'.config' if oci else ''}.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [],
    }  # fmt: skip
    return put_manifest(registry, repository, reference, manifest), config_digest


def blob_file(registry: Registry, digest: str) -> Path:
    """Where the registry's filesystem storage keeps a blob's content."""
    hexdigest = digest.removeprefix("sha256:")
    return (
        registry.root
        / "data"
        / "docker"
        / "registry"
        / "v2"
        / "blobs"
        / "sha256"
        / hexdigest[:2]
        / hexdigest
        / "data"
    )
