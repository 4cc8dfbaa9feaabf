"""A corpus of keys users paste by mistake, each with the words qimg's refusal must contain."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from qimg.launcher.keys.wire import mpint, string


def _openssh_line(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode() + " user@host"


def corpus() -> dict[str, tuple[str, str]]:
    good = ed25519.Ed25519PrivateKey.generate()
    line = _openssh_line(good)
    key_type, body, _comment = line.split()
    dsa_blob = string(b"ssh-dss") + b"".join(mpint(value) for value in (2**1023 + 1, 2**159 + 7, 5, 11))
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private_openssh = good.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    private_pem = weak.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return {
        "empty": ("", "is empty"),
        "blank lines": ("\n \n", "is empty"),
        "dsa": (f"ssh-dss {base64.b64encode(dsa_blob).decode()} old@host\n", "DSA key"),
        "rsa-1024": (_openssh_line(weak), "RSA key of 1024 bits"),
        "truncated base64": (f"{key_type} {body[:30]} user@host", "truncated or damaged"),
        "corrupted base64": (f"{key_type} {body[:20]}!!{body[22:]} user@host", "truncated or damaged"),
        "type and body disagree": (f"ssh-rsa {body} user@host", "does not hold a ssh-rsa key"),
        "unknown type": (f"ssh-foo {body}", "does not start with a key type qimg knows"),
        "certificate": (
            f"ssh-ed25519-cert-v01@openssh.com {body}",
            "does not start with a key type qimg knows",
        ),
        "null": ("null", "not a public key line"),
        "no type prefix": (body, "not a public key line"),
        "body too short for its type": (f"{key_type} AAAA user@host", "does not hold a ssh-ed25519 key"),
        "several keys on a line": (f"{line} {line}", "several keys"),
        "openssh private key": (private_openssh, "is a private key"),
        "pem private key": (private_pem, "is a private key"),
        "damaged ppk": (
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: x\nPublic-Lines: 1\n!!!\n",
            "not a well-formed PuTTY key file",
        ),
        "rfc4716 without its end": (f"---- BEGIN SSH2 PUBLIC KEY ----\n{body}\n", "truncated or damaged"),
    }
