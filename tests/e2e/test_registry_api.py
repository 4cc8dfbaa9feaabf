"""qimg's registry client (`registry_api`) against Debian's docker-registry (open, htpasswd, token auth),
and against a hostile registry of the test's own for what a real one never sends."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qimg import registry_api
from qimg.builder import labels
from qimg.builder.spec import ImageRef
from qimg.errors import UsageError
from qimg.registry_api import RegistryError, RemoteImage, read_image
from tests.fakes.http import serving
from tests.fakes.registry import REGISTRY_PASSWORD, REGISTRY_USER, Registry, put_image, put_manifest

TESTER = (REGISTRY_USER, REGISTRY_PASSWORD)
BASIC = "Basic " + base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()


def read(registry: Registry, name: str, auth: tuple[str, str] | None = None) -> RemoteImage | None:
    return read_image(ImageRef.parse(registry.ref(name), "IMAGE"), auth)


def entry(digest: str, platform: tuple[str, str], oci: bool) -> dict[str, object]:
    media = registry_api.OCI_MANIFEST if oci else registry_api.DOCKER_MANIFEST
    return {
        "mediaType": media,
        "digest": digest,
        "size": 1,
        "platform": {"os": platform[0], "architecture": platform[1]},
    }


@pytest.mark.parametrize("oci", [False, True], ids=["docker", "oci"])
def test_a_multi_platform_image_gives_its_linux_amd64_labels(open_registry: Registry, oci: bool) -> None:
    arm, _ = put_image(open_registry, "team/multi", "arm", {"built": "arm64"}, ("linux", "arm64"), oci=oci)
    amd, config = put_image(open_registry, "team/multi", "amd", {"built": "amd64"}, oci=oci)
    index = put_manifest(
        open_registry, "team/multi", "both",
        {"schemaVersion": 2, "mediaType": registry_api.OCI_INDEX if oci else registry_api.DOCKER_LIST,
         "manifests": [entry(arm, ("linux", "arm64"), oci), entry(amd, ("linux", "amd64"), oci)]},
    )  # fmt: skip
    assert read(open_registry, "team/multi:both") == RemoteImage(index, amd, config, {"built": "amd64"})
    assert read(open_registry, "team/multi:amd") == RemoteImage(amd, amd, config, {"built": "amd64"})


def test_an_index_without_linux_amd64_names_what_it_has(open_registry: Registry) -> None:
    arm, _ = put_image(open_registry, "team/armonly", "arm", {}, ("linux", "arm64"), oci=True)
    put_manifest(
        open_registry, "team/armonly", "1",
        {"schemaVersion": 2, "mediaType": registry_api.OCI_INDEX,
         "manifests": [entry(arm, ("linux", "arm64"), True)]},
    )  # fmt: skip
    with pytest.raises(UsageError, match=r"has no linux/amd64 image, .*\(it has linux/arm64\)"):
        read(open_registry, "team/armonly:1")


def test_an_absent_image_is_none(open_registry: Registry) -> None:
    assert read(open_registry, "team/never-pushed:1") is None


@pytest.mark.docker
def test_basic_auth(pushed_image: str, auth_registry: Registry) -> None:
    """The htpasswd registry challenges with Basic: the credentials given, else a refusal that says how."""
    name = pushed_image.partition("/")[2]
    found = read(auth_registry, name, TESTER)
    assert found is not None
    image = labels.read(found.labels, pushed_image)
    assert image is not None and image.user == "alice"
    with pytest.raises(UsageError, match="needs credentials for team/alice"):
        read(auth_registry, name)
    with pytest.raises(UsageError, match=f"refused team/alice to {REGISTRY_USER}: check the password"):
        read(auth_registry, name, (REGISTRY_USER, "wrong"))


# --- a hostile registry: what a real one does not send ---


@dataclass
class Hostile:
    """A registry whose replies the test writes: `routes` maps a path to (status, headers, body)."""

    url: str
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization) of each request
    protected: set[str] = field(default_factory=set)  # paths answered 401 without the tester's Basic
    handler: type[BaseHTTPRequestHandler] = BaseHTTPRequestHandler  # what serves its routes

    def read(self, auth: tuple[str, str] | None = TESTER) -> RemoteImage | None:
        return read_image(ImageRef.parse(f"{self.url.removeprefix('http://')}/team/x:1", "IMAGE"), auth)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    state = Hostile("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            given = self.headers.get("Authorization", "")
            state.seen.append((self.path, given))
            status, headers, body = state.routes.get(self.path.split("?")[0], (404, {}, b"{}"))
            if self.path in state.protected and given != BASIC:
                status, headers, body = 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        state.url, state.handler = f"http://127.0.0.1:{server.server_address[1]}", Handler
        yield state


def digest(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def manifest_for(config: bytes, size: int | None = None) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": registry_api.DOCKER_MANIFEST, "layers": [],
         "config": {"mediaType": registry_api.IMAGE_CONFIGS[0], "digest": digest(config),
                    "size": len(config) if size is None else size}}
    ).encode()  # fmt: skip


CONFIG = json.dumps({"os": "linux", "architecture": "amd64", "config": {"Labels": {"a": "b"}}}).encode()
MANIFEST_PATH, CONFIG_PATH = "/v2/team/x/manifests/1", f"/v2/team/x/blobs/{digest(CONFIG)}"


def serve_image(hostile: Hostile, manifest: bytes = b"", config: bytes = CONFIG) -> None:
    hostile.routes[MANIFEST_PATH] = (200, {}, manifest or manifest_for(CONFIG))
    hostile.routes[CONFIG_PATH] = (200, {}, config)


def test_the_hostile_registry_serves_a_good_image(hostile: Hostile) -> None:
    serve_image(hostile)
    found = hostile.read(None)
    assert found is not None and found.labels == {"a": "b"} and found.config == digest(CONFIG)


Tamper = Callable[[Hostile], None]


def serves(path: str, status: int, body: bytes, headers: dict[str, str] | None = None) -> Tamper:
    """The registry answers `path` so."""
    return lambda hostile: hostile.routes.update({path: (status, headers or {}, body)})


def bearer_with_token(token: str) -> Tamper:
    def tamper(hostile: Hostile) -> None:
        challenge = f'Bearer realm="{hostile.url}/token",service="s"'
        serves(MANIFEST_PATH, 401, b"", {"WWW-Authenticate": challenge})(hostile)
        serves("/token", 200, json.dumps({"token": token}).encode())(hostile)

    return tamper


ERROR_500 = b'{"errors": [{"code": "UNKNOWN", "message": "\\u001b[31mboom"}]}'
FAULTS: dict[str, tuple[Tamper, str]] = {
    "a manifest above 4 MiB": (
        serves(MANIFEST_PATH, 200, b" " * (registry_api.MAX_MANIFEST + 1)),
        "sent a reply of 4194305 bytes",
    ),
    "a manifest that is not JSON": (serves(MANIFEST_PATH, 200, b"<html>"), "not a JSON object"),
    "a manifest nested too deep to parse": (serves(MANIFEST_PATH, 200, b"[" * 200_000), "not a JSON object"),
    "a manifest cut short": (
        serves(MANIFEST_PATH, 200, b'{"schemaVersion"', {"Content-Length": "4000"}),
        "cut short (16 of 4000",
    ),
    "a token realm that is no URL": (
        serves(MANIFEST_PATH, 401, b"", {"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:port/t"'}),
        "does not answer at",
    ),
    "a digest header that lies": (
        serves(MANIFEST_PATH, 200, manifest_for(CONFIG), {"Docker-Content-Digest": digest(b"x")}),
        "whose digest is not the",
    ),
    "a configuration longer than its size": (serves(CONFIG_PATH, 200, CONFIG + b" "), "a reply of 75 bytes"),
    "a configuration shorter than its size": (
        serves(CONFIG_PATH, 200, CONFIG[:-1]),
        "a configuration of 73 bytes, not the 74",
    ),
    "a configuration size above the cap": (
        serves(MANIFEST_PATH, 200, manifest_for(CONFIG, registry_api.MAX_CONFIG + 1)),
        "gives its configuration a size qimg does not take",
    ),
    "a configuration that does not match its digest": (
        serves(CONFIG_PATH, 200, CONFIG.replace(b'"b"', b'"c"')),
        "does not match its digest",
    ),
    "a server error": (serves(MANIFEST_PATH, 500, ERROR_500), "answered 500 (UNKNOWN ?[31mboom)"),
    "a challenge of an unknown kind": (
        serves(MANIFEST_PATH, 401, b"", {"WWW-Authenticate": "Negotiate"}),
        "asked for credentials in a way qimg does not know",
    ),
    "a token realm over plain http elsewhere": (
        serves(MANIFEST_PATH, 401, b"", {"WWW-Authenticate": 'Bearer realm="http://tokens.example.com/t"'}),
        "which is not https",
    ),
    "a token that would split a header": (bearer_with_token("abc\r\nX-Evil: 1"), "sent no usable token"),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_what_a_registry_must_not_send_is_refused_in_one_line(hostile: Hostile, case: str) -> None:
    serve_image(hostile)
    tamper, fragment = FAULTS[case]
    tamper(hostile)
    with pytest.raises(RegistryError) as refused:
        hostile.read()
    assert fragment in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"the registry {hostile.url.removeprefix('http://')} ")
    assert REGISTRY_PASSWORD not in str(refused.value)


def test_credentials_are_not_sent_on_after_a_redirect(hostile: Hostile) -> None:
    """A blob stored elsewhere (S3) gets no credentials: here, the redirect's target logs what it got."""
    serve_image(hostile)
    hostile.protected = {MANIFEST_PATH, CONFIG_PATH}
    hostile.routes[CONFIG_PATH] = (307, {"Location": "/storage"}, b"")
    hostile.routes["/storage"] = (200, {}, CONFIG)
    found = hostile.read()
    assert found is not None and found.labels == {"a": "b"}
    assert (CONFIG_PATH, BASIC) in hostile.seen and ("/storage", "") in hostile.seen


def test_platform_names_from_the_registry_are_shown_printable(hostile: Hostile) -> None:
    index = {
        "schemaVersion": 2, "mediaType": registry_api.OCI_INDEX,
        "manifests": [entry(digest(b"m"), ("linux\x1b[2J", "arm64\r\nforged"), oci=True)],
    }  # fmt: skip
    serves(MANIFEST_PATH, 200, json.dumps(index).encode())(hostile)
    with pytest.raises(UsageError, match=r"\(it has linux\?\[2J/arm64\?\?forged\)") as refused:
        hostile.read()
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)


def index_of(*entries: dict[str, object]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": registry_api.OCI_INDEX, "manifests": list(entries)}
    ).encode()


def test_an_index_inside_an_index_is_refused(hostile: Hostile) -> None:
    inner = index_of()
    serves(MANIFEST_PATH, 200, index_of(entry(digest(inner), ("linux", "amd64"), oci=True)))(hostile)
    serves(f"/v2/team/x/manifests/{digest(inner)}", 200, inner)(hostile)
    with pytest.raises(RegistryError, match="sent an index inside an index for 1: qimg reads one level"):
        hostile.read()


def test_a_manifest_named_by_an_index_must_match_its_digest(hostile: Hostile) -> None:
    named = digest(b"another manifest")
    serves(MANIFEST_PATH, 200, index_of(entry(named, ("linux", "amd64"), oci=True)))(hostile)
    serves(f"/v2/team/x/manifests/{named}", 200, manifest_for(CONFIG))(hostile)
    with pytest.raises(
        RegistryError, match=r"sent the manifest sha256:\w+\.\.\. whose content does not match"
    ):
        hostile.read()


def test_a_digest_qimg_cannot_check_is_refused(hostile: Hostile) -> None:
    serves(MANIFEST_PATH, 200, index_of(entry("sha512:" + "a" * 128, ("linux", "amd64"), oci=True)))(hostile)
    with pytest.raises(RegistryError, match=r"by a digest qimg cannot check .*: qimg checks sha256"):
        hostile.read()


def test_a_schema_1_manifest_is_refused(hostile: Hostile) -> None:
    schema1 = {"schemaVersion": 1, "name": "team/x", "tag": "1", "fsLayers": [], "history": []}
    serves(MANIFEST_PATH, 200, json.dumps(schema1).encode())(hostile)
    with pytest.raises(
        UsageError, match="has a schema 1 manifest, which qimg does not read: push the image again"
    ):
        hostile.read()


@dataclass(frozen=True)
class HttpsName:
    """An image on a registry served over https on 127.0.0.1 (ImageRef would say http there)."""

    server_url: str
    registry: str = "tls-registry"
    repository: str = "team/x"
    tag: str = "1"
    on_hub: bool = False


@pytest.fixture
def tls_hostile(hostile: Hostile, tmp_path: Path) -> Iterator[tuple[HttpsName, Path]]:
    """The hostile registry's routes, served over https with a certificate of the test's (the path of
    its PEM, for SSL_CERT_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    address = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(address, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), hostile.handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server):
        yield HttpsName(f"https://127.0.0.1:{server.server_address[1]}"), pem


def test_an_untrusted_certificate_is_one_line(tls_hostile: tuple[HttpsName, Path], hostile: Hostile) -> None:
    name, _pem = tls_hostile
    serve_image(hostile)
    with pytest.raises(
        RegistryError, match=r"does not answer at 127\.0\.0\.1:\d+ \(.*CERTIFICATE_VERIFY_FAILED"
    ):
        read_image(name, None)


def test_no_redirect_from_https_down_to_http(
    tls_hostile: tuple[HttpsName, Path], hostile: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, pem = tls_hostile
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    serve_image(hostile)
    assert read_image(name, None) is not None  # trusted now: the image is read over https
    serves(CONFIG_PATH, 307, b"", {"Location": f"{hostile.url}/storage"})(hostile)
    serves("/storage", 200, CONFIG)(hostile)
    with pytest.raises(RegistryError, match="redirected qimg from https to plain http"):
        read_image(name, None)
    assert not [path for path, _ in hostile.seen if path == "/storage"]
