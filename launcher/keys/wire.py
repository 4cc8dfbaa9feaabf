"""The SSH wire encoding of keys (RFC 4251 strings and mpints), and what a public key blob says.

Only parsing and checking: no cryptography is done here (that is the `cryptography` package's job).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

# The public key types qimg accepts, with the curve (or fixed) size they imply.
ED25519, RSA, DSA = "ssh-ed25519", "ssh-rsa", "ssh-dss"
ECDSA_BITS = {"ecdsa-sha2-nistp256": 256, "ecdsa-sha2-nistp384": 384, "ecdsa-sha2-nistp521": 521}
SK_TYPES = ("sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
KNOWN_TYPES = (ED25519, RSA, *ECDSA_BITS, *SK_TYPES)


class WireError(ValueError):
    """The bytes are not a well-formed key: truncated, corrupted, or of another type than announced."""


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise WireError("truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def string(self) -> bytes:
        return self.take(self.uint32())

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise WireError("trailing bytes")


def string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def mpint(value: int) -> bytes:
    if value == 0:
        return string(b"")
    size = value.bit_length() // 8 + 1  # room for the sign bit: a leading 0 byte when the top bit is set
    return string(value.to_bytes(size, "big", signed=True))


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str = ""

    @property
    def line(self) -> str:
        """The one OpenSSH line for authorized_keys (and DOCKER_SSH)."""
        body = base64.b64encode(self.blob).decode()
        return f"{self.type} {body} {self.comment}".strip()

    @property
    def bits(self) -> int:
        return key_bits(self.blob)

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")


def key_bits(blob: bytes) -> int:
    """The size of a public key blob, after checking its whole structure (raises WireError)."""
    reader = Reader(blob)
    key_type = reader.string().decode("ascii", "replace")
    if key_type in (ED25519, SK_TYPES[0]):
        if len(reader.string()) != 32:
            raise WireError("an ed25519 key is 32 bytes")
        bits = 256
    elif key_type == RSA:
        exponent, modulus = reader.mpint(), reader.mpint()
        if exponent < 3 or exponent % 2 == 0 or modulus <= 0:
            raise WireError("not an RSA public key")
        bits = modulus.bit_length()
    elif key_type in ECDSA_BITS or key_type == SK_TYPES[1]:
        curve = reader.string().decode("ascii", "replace")
        point = reader.string()
        bits = ECDSA_BITS.get(key_type, 256)
        coordinate = (bits + 7) // 8
        curve_matches = key_type.endswith(f"-{curve}") or f"-{curve}@" in key_type
        if not curve_matches or point[:1] != b"\x04" or len(point) != 1 + 2 * coordinate:
            raise WireError("not an ECDSA public key")
    elif key_type == DSA:
        for _ in range(4):
            reader.mpint()
        bits = 1024
    else:
        raise WireError("an unknown key type")
    if key_type in SK_TYPES:
        reader.string()  # the application ("ssh:")
    reader.end()
    return bits


def blob_type(blob: bytes) -> str:
    """The type a blob announces, or "" when too short to say (key_bits then tells what is wrong)."""
    try:
        return Reader(blob).string().decode("ascii", "replace")
    except WireError:
        return ""
