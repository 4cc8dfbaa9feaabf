"""A container registry's HTTP API v2, spoken directly: what `qimg run` must know of a pushed image (that
its registry has it, which manifest, its labels) without a Docker engine, which a laptop launching a
colleague's image may not have; and the Dev Container features `qimg build --devcontainer` fetches,
which are OCI artifacts that no engine pulls.

A few calls on urllib, with docker-py's helpers for the credentials `docker login` stored
(`engine.registry_credentials`), rather than a client library: oras-py and python-dxf each bring
requests (python-dxf also jwcrypto, www-authenticate and tqdm) for the same three requests, and
neither caps what it reads nor checks a manifest's shape. Everything the registry (and its token
service) sends is untrusted: sizes capped, digests checked (a manifest named by digest, the config
blob against its manifest), JSON shapes validated.

What those clients, or the engine that was asked before, do that this one does not, each refused in
one line or tested (tests/e2e/test_registry_api.py, test_run_registry.py):
- Identity tokens (the OAuth2 refresh token `docker login` stores for some registries, POSTed to the
  token service): not sent; the registry is asked anonymously, and its refusal says to log in or give
  --username/--password-stdin.
- The engine's `registry-mirrors` and `insecure-registries`: unknown here. A registry is spoken to over
  https, over plain http only on this machine (localhost, 127.x), as docker does by default; a
  registry that does not answer, or whose certificate is not trusted, is one line naming it.
- Schema 1 manifests (deprecated since 2017) and an index inside an index: refused in one line.
- Digests other than sha256: refused in one line.
- A redirect: followed without the credentials or the token (a blob stored elsewhere, S3), and never
  from https down to plain http.
- An image's layers are never read: only the manifest and the image's configuration. An artifact's
  layer (a Dev Container feature: `read_artifact`) is, within a cap, its digest checked.
- Docker Hub (registry-1.docker.io, its token service auth.docker.io) was not reached from here (no
  network): its flow is the token flow the tests run.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPMessage
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from qimg.errors import QimgError, UsageError

DOCKER_HUB_API = "https://registry-1.docker.io"  # where Docker Hub's registry API answers
PLATFORM = ("linux", "amd64")  # what Qarnot's nodes run
TIMEOUT = 30.0  # seconds, per request
USER_AGENT = "qimg"  # what registries log: qimg's own requests, told from the engine's
MAX_MANIFEST = 4 << 20  # distribution's own limit on a manifest
MAX_CONFIG = 8 << 20  # an image's configuration: labels, history, environment
MAX_TOKEN_REPLY = 1 << 20
MAX_ERROR = 64 << 10  # the part of an error reply read for its message
MAX_CHALLENGE = 8 << 10
_REDIRECTS = 5

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEXES, MANIFESTS = (DOCKER_LIST, OCI_INDEX), (DOCKER_MANIFEST, OCI_MANIFEST)
IMAGE_CONFIGS = ("application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json")
_SCHEMA1 = re.compile(r"application/vnd\.docker\.distribution\.manifest\.v1(\+prettyjws|\+json)?")

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,65536}")  # a JWT or an opaque token, fit for a header
_CHALLENGE = re.compile(r"\s*(\w+)\s+(.*)", re.DOTALL)
_PARAM = re.compile(r'(\w+)="([^"]*)"')
_LOOPBACK = ("localhost", "127.", "::1")


class RegistryError(QimgError):
    """The registry (or its token service) failed or sent what it must not: a fault of the registry."""


class ImageName(Protocol):
    """An image's name as `ImageRef` splits it."""

    @property
    def registry(self) -> str: ...  # as the user names it, for messages
    @property
    def repository(self) -> str: ...
    @property
    def tag(self) -> str: ...
    @property
    def on_hub(self) -> bool: ...
    @property
    def server_url(self) -> str: ...  # https://REGISTRY, plain http on this machine


@dataclass(frozen=True)
class RemoteImage:
    """An image as its registry holds it, for PLATFORM."""

    digest: str  # what the tag names: the manifest's, or the index's of a multi-platform image
    manifest: str  # the digest of PLATFORM's manifest
    config: str  # the configuration's digest (the image's id on an engine without the containerd store)
    labels: dict[str, str]


@dataclass
class _Reply:
    status: int
    headers: Message
    body: bytes


class _Downgrade(urllib.error.HTTPError):
    """A redirect from https to plain http, refused."""


class _NoCredentialsOnRedirect(urllib.request.HTTPRedirectHandler):
    """Follows a redirect (a blob stored elsewhere) with no credentials (they are unredirected
    headers), never from https down to http."""

    max_redirections = _REDIRECTS

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise _Downgrade(newurl, code, "a redirect from https to plain http", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_NoCredentialsOnRedirect())


def read_image(name: ImageName, auth: tuple[str, str] | None) -> RemoteImage | None:
    """The image `name` (its tag) as its registry holds it for PLATFORM, read with `auth` (else
    anonymously): None when the registry has no such image."""
    session = _Session(name, auth)
    reply = session.tagged(name.tag)
    if reply is None:
        return None
    digest = _digest_of(reply.body)
    document, media = session.manifest(reply)
    if media in INDEXES:
        manifest = session.pick(document)
        named = session.get(f"manifests/{manifest}", ", ".join(MANIFESTS), MAX_MANIFEST)
        if named.status == 404:
            raise session.fault(f"lists {manifest} for {'/'.join(PLATFORM)} but does not have it")
        session.check_digest(named.body, manifest, "the manifest")
        document, media = session.manifest(named)
        if media not in MANIFESTS:
            raise session.fault(f"sent an index inside an index for {name.tag}: qimg reads one level")
    else:
        manifest = digest
    config, labels = session.configuration(document)
    return RemoteImage(digest, manifest, config, labels)


@dataclass(frozen=True)
class Artifact:
    """An OCI artifact of one layer (a Dev Container feature), as its registry holds it."""

    digest: str  # its manifest's
    layer: bytes  # checked against the digest its manifest gives


def read_artifact(
    name: ImageName, version: str, auth: tuple[str, str] | None, kind: tuple[str, str], limit: int
) -> Artifact | None:
    """The artifact `name` at `version` (a tag, or a manifest's digest: then the manifest is checked
    against it), whose configuration and first layer have the media types `kind`, its layer at most
    `limit` bytes: None when the registry has no such tag or digest. (Only `docker login` gives
    credentials for it.)"""
    session = _Session(name, auth, options=False)
    reply = session.tagged(version)
    if reply is None:
        return None
    digest = _digest_of(reply.body)
    if _DIGEST.fullmatch(version) and digest != version:
        raise session.fault(f"sent a manifest for {version[:19]}... whose content does not match it")
    document, media = session.manifest(reply)
    config_media, layer_media = kind
    found = _field(document.get("config"), "mediaType")
    layers = document.get("layers")
    if media != OCI_MANIFEST or found != config_media or not isinstance(layers, list) or not layers:
        what = (
            "an image index (a multi-platform image's)" if media in INDEXES
            else "an artifact with no layer" if found == config_media
            else f"something whose configuration is {_shown(str(found), 80)!r}"
        )  # fmt: skip
        raise UsageError(
            f"{name.registry}/{name.repository}:{_shown(version, 80)} is not a {config_media} artifact "
            f"but {what}: check the name"
        )
    layer = layers[0]
    if _field(layer, "mediaType") != layer_media:
        raise session.fault(f"sent an artifact whose layer is not {layer_media}")
    return Artifact(digest, session.blob(layer, "layer", limit)[1])


def tag_digest(name: ImageName, auth: tuple[str, str] | None) -> str | None:
    """The digest of what the tag names (a manifest, or a multi-platform image's index), as the
    registry serves it: what a push is proven by. None when the registry has no such tag."""
    reply = _Session(name, auth).tagged(name.tag)
    return None if reply is None else _digest_of(reply.body)


def _digest_of(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


class _Session:
    """Requests to one repository of one registry, authorised once (Basic, or a token service's
    Bearer token, on the registry's challenge)."""

    def __init__(self, name: ImageName, auth: tuple[str, str] | None, options: bool = True) -> None:
        """`options`: whether the command has --username and --password-stdin, which refusals name."""
        server = DOCKER_HUB_API if name.on_hub else name.server_url
        self.base = f"{server.rstrip('/')}/v2/{quote(name.repository, safe='/')}/"
        self.registry, self.repository, self.auth = name.registry, name.repository, auth
        self.options = options
        self.authorization = ""

    def tagged(self, tag: str) -> _Reply | None:
        """The manifest (or index) the tag (or digest) names, None when there is none."""
        reply = self.get(f"manifests/{quote(tag, safe='')}", ", ".join((*INDEXES, *MANIFESTS)), MAX_MANIFEST)
        if reply.status == 404:
            return None
        served = reply.headers.get("Docker-Content-Digest")
        if served and _DIGEST.fullmatch(served) and served != _digest_of(reply.body):
            raise self.fault(f"sent a manifest for {tag} whose digest is not the {served} it announced")
        return reply

    def fault(self, what: str) -> RegistryError:
        return RegistryError(f"the registry {self.registry} {what}: try again later, or ask its operator")

    def get(self, path: str, accept: str, limit: int) -> _Reply:
        """The reply to GET `path` (a 401 answered by authorising once); a status other than 200 and
        404 is refused here."""
        reply = self._send(self.base + path, accept, limit)
        if reply.status == 401 and not self.authorization:
            self.authorization = self._authorise(reply.headers.get("WWW-Authenticate", ""))
            reply = self._send(self.base + path, accept, limit)
        if reply.status in (401, 403):
            raise self._refused()
        if reply.status not in (200, 404):
            raise self.fault(f"answered {reply.status} ({_registry_message(reply.body)})")
        return reply

    def _refused(self) -> UsageError:
        given = ", or give --username and --password-stdin" if self.options else ""
        if self.auth is None:
            return UsageError(
                f"the registry {self.registry} needs credentials for {self.repository} (or has no such "
                f"repository): log in with `docker login {self.registry}`{given}"
            )
        password = "(--password-stdin, or `docker login`)" if self.options else "(`docker login`)"
        return UsageError(
            f"the registry {self.registry} refused {self.repository} to {self.auth[0]}: check the password "
            f"{password}, that the user may pull it, and the name"
        )

    def _send(self, url: str, accept: str, limit: int, authorization: str | None = None) -> _Reply:
        headers = {"User-Agent": USER_AGENT, **({"Accept": accept} if accept else {})}
        request = urllib.request.Request(url, headers=headers)
        sent = self.authorization if authorization is None else authorization
        if sent:
            request.add_unredirected_header("Authorization", sent)
        try:
            with _opener.open(request, timeout=TIMEOUT) as answer:
                return _Reply(answer.status, answer.headers, self._bounded(answer, limit))
        except _Downgrade:
            raise self.fault("redirected qimg from https to plain http, which qimg refuses") from None
        except urllib.error.HTTPError as refused:
            with refused:
                return _Reply(refused.code, refused.headers, _error_body(refused))
        # Refused, reset, TLS, a timeout, a reply cut short or malformed, a realm that is no URL.
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            if isinstance(reason, socket.timeout):
                reason = f"no answer in {TIMEOUT:.0f} s"
            raise RegistryError(
                f"the registry {self.registry} does not answer at {urlsplit(url).netloc} "
                f"({_shown(str(reason), 200)}): check the image's name and your network"
            ) from None

    def _bounded(self, answer: Any, limit: int) -> bytes:
        length = answer.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise self.fault(f"sent a reply of {int(length)} bytes, above qimg's {limit}")
        body: bytes = answer.read(limit + 1)
        if len(body) > limit:
            raise self.fault(f"sent a reply larger than qimg's {limit} bytes")
        if length and length.isdigit() and len(body) != int(length):
            raise self.fault(f"sent a reply cut short ({len(body)} of {int(length)} bytes)")
        return body

    def _authorise(self, challenge: str) -> str:
        """The Authorization header the registry's challenge asks for."""
        matched = _CHALLENGE.fullmatch(challenge[:MAX_CHALLENGE])
        scheme = matched.group(1).lower() if matched else ""
        params = dict(_PARAM.findall(matched.group(2))) if matched else {}
        if scheme == "basic":
            return self._basic()
        if scheme == "bearer" and params.get("realm"):
            return "Bearer " + self._token(params["realm"], params.get("service", ""))
        raise self.fault(f"asked for credentials in a way qimg does not know ({_shown(challenge, 80)!r})")

    def _basic(self) -> str:
        if self.auth is None:
            raise self._refused()
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()

    def _token(self, realm: str, service: str) -> str:
        """A pull token from the token service the registry named."""
        where = urlsplit(realm)
        local = (where.hostname or "").startswith(_LOOPBACK)
        if where.scheme != "https" and not (where.scheme == "http" and local):
            raise self.fault(f"sends credentials to {_shown(realm, 80)!r}, which is not https")
        query = urlencode({"service": service, "scope": f"repository:{self.repository}:pull"})
        basic = self._basic() if self.auth else ""
        reply = self._send(
            f"{realm}{'&' if where.query else '?'}{query}", "application/json", MAX_TOKEN_REPLY, basic
        )
        if reply.status in (401, 403):
            raise self._refused()
        if reply.status != 200:
            raise self.fault(f"token service answered {reply.status} ({_registry_message(reply.body)})")
        document = _json(reply.body)
        token = _field(document, "token") or _field(document, "access_token")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise self.fault("token service sent no usable token")
        return token

    def manifest(self, reply: _Reply) -> tuple[dict[str, Any], str]:
        """The manifest's JSON object and media type (its own, else the reply's Content-Type)."""
        document = _json(reply.body)
        if not isinstance(document, dict):
            raise self.fault("sent a manifest that is not a JSON object")
        declared = (
            document.get("mediaType") or (reply.headers.get("Content-Type") or "").split(";")[0].strip()
        )
        if document.get("schemaVersion") == 1 or _SCHEMA1.fullmatch(str(declared)):
            raise UsageError(
                f"{self.registry}/{self.repository} has a schema 1 manifest, which qimg does not read: "
                "push the image again with a recent docker"
            )
        if declared not in (*INDEXES, *MANIFESTS):  # OCI allows leaving mediaType out
            declared = OCI_INDEX if "manifests" in document else OCI_MANIFEST if "config" in document else ""
        if document.get("schemaVersion") != 2 or not declared:
            raise self.fault(f"sent a manifest qimg does not know ({_shown(str(declared), 80)!r})")
        return document, str(declared)

    def pick(self, index: dict[str, Any]) -> str:
        """The digest of PLATFORM's manifest in a multi-platform image."""
        entries = index.get("manifests")
        if not isinstance(entries, list):
            raise self.fault("sent an index without a list of manifests")
        offered = []
        for entry in entries:
            platform = _field(entry, "platform")
            system, architecture = _field(platform, "os"), _field(platform, "architecture")
            if not (isinstance(system, str) and isinstance(architecture, str)):
                continue
            if (system, architecture) == PLATFORM:
                return self.digest_field(entry, "a manifest")
            offered.append(_shown(f"{system}/{architecture}", 40))
        raise UsageError(
            f"{self.registry}/{self.repository} has no {'/'.join(PLATFORM)} image, which Qarnot's nodes "
            f"run (it has {', '.join(sorted(set(offered))[:8]) or 'none'}): build one with "
            "`docker buildx build --platform linux/amd64`"
        )

    def digest_field(self, descriptor: Any, what: str) -> str:
        digest = _field(descriptor, "digest")
        if isinstance(digest, str) and _DIGEST.fullmatch(digest):
            return digest
        if isinstance(digest, str) and _ANY_DIGEST.fullmatch(digest):
            raise self.fault(
                f"names {what} by a digest qimg cannot check ({digest[:20]}...): qimg checks sha256"
            )
        raise self.fault(f"names {what} without a valid digest")

    def check_digest(self, body: bytes, digest: str, what: str) -> None:
        if _digest_of(body) != digest:
            raise self.fault(f"sent {what} {digest[:19]}... whose content does not match its digest")

    def blob(self, descriptor: Any, what: str, limit: int) -> tuple[str, bytes]:
        """The digest and the content of the blob `descriptor` names (its `what`): its size at most
        `limit`, as the descriptor says, and its content checked against its digest."""
        digest = self.digest_field(descriptor, f"its {what}")
        size = _field(descriptor, "size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= limit:
            raise self.fault(f"gives its {what} a size qimg does not take ({str(size)[:20]})")
        reply = self.get(f"blobs/{digest}", "", size)
        if reply.status == 404:
            raise self.fault(f"does not have the {what} {digest[:19]}... its manifest names")
        if len(reply.body) != size:
            raise self.fault(f"sent a {what} of {len(reply.body)} bytes, not the {size} its manifest says")
        self.check_digest(reply.body, digest, f"the {what}")
        return digest, reply.body

    def configuration(self, manifest: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """The image configuration's digest and its labels (text only: labels are anyone's to write)."""
        descriptor = manifest.get("config")
        self.digest_field(descriptor, "its configuration")
        media = _field(descriptor, "mediaType")
        if media not in IMAGE_CONFIGS:
            raise UsageError(
                f"{self.registry}/{self.repository} is not a container image (its configuration is "
                f"{_shown(str(media), 80)!r}): name an image"
            )
        digest, body = self.blob(descriptor, "configuration", MAX_CONFIG)
        config = _json(body)
        found = _field(_field(config, "config"), "Labels")
        system, architecture = _field(config, "os"), _field(config, "architecture")
        if isinstance(system, str) and isinstance(architecture, str) and (system, architecture) != PLATFORM:
            raise UsageError(
                f"{self.registry}/{self.repository} is a {_shown(f'{system}/{architecture}', 40)} image, "
                f"and Qarnot's nodes run {'/'.join(PLATFORM)}: build it with "
                "`docker buildx build --platform linux/amd64`"
            )
        labels = found if isinstance(found, dict) else {}
        return digest, {
            key: value for key, value in labels.items() if isinstance(key, str) and isinstance(value, str)
        }


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON (nor UTF-8); nested deeper than Python's stack
        return None


def _error_body(refused: urllib.error.HTTPError) -> bytes:
    try:
        return refused.read(MAX_ERROR)
    except (OSError, http.client.HTTPException):
        return b""


def _shown(text: str, limit: int) -> str:
    """A registry's text in a message: one line of printable ASCII, at most `limit` characters."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def _field(document: Any, name: str) -> Any:
    return document.get(name) if isinstance(document, dict) else None


def _registry_message(body: bytes) -> str:
    """The registry's own words for an error (its first error's code and message), printable and short."""
    first = _field(_json(body), "errors")
    error = first[0] if isinstance(first, list) and first else None
    words = " ".join(str(_field(error, key) or "") for key in ("code", "message")).strip()
    return _shown(words, 160) or "no message"
