"""A token service for the test registry's `auth: token` (the flow of Docker Hub, GitLab, Harbor): the
registry answers 401 with `WWW-Authenticate: Bearer realm=...,service=...`, the client asks this
service for a token (Basic credentials, or none), and the registry checks the token's signature against
its `rootcertbundle`.

Tokens are JWTs signed RS256 with a key whose self-signed certificate is the bundle, carried in the
token's header (x5c), as distribution 2.8 checks them. The tester gets what it asks for; anyone else
(no credentials) gets a token that grants nothing, as real services answer anonymous clients.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes.http import http_server, reply_json

SERVICE, ISSUER = "qimg-test-registry", "qimg-test-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """The service's address (`realm`) and what it was asked, in order (`asked`: user or "", scope, and
    the client's User-Agent)."""

    realm: str
    asked: list[tuple[str, str, str]]


class _Signer:
    def __init__(self, bundle: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def token(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes if user else []:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64(signature)}"


@contextlib.contextmanager
def serve_tokens(bundle: Path, user: str, password: str) -> Iterator[TokenService]:
    """The service on 127.0.0.1, its signing certificate written to `bundle`."""
    signer = _Signer(bundle)
    asked: list[tuple[str, str, str]] = []

    def answer(request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(request.path).query)
        given = request.headers.get("Authorization", "")
        who = ""
        if given:
            scheme, _, encoded = given.partition(" ")
            decoded = base64.b64decode(encoded).decode() if scheme == "Basic" else ""
            if decoded != f"{user}:{password}":
                reply_json(request, 401, {"details": "incorrect username or password"})
                return
            who = user
        scopes = query.get("scope", [])
        asked.append((who, " ".join(scopes), request.headers.get("User-Agent", "")))
        token = signer.token(who, scopes)
        reply_json(request, 200, {"token": token, "access_token": token, "expires_in": 300})

    with http_server(answer) as host:
        yield TokenService(f"http://{host}/token", asked)
