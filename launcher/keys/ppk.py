"""PuTTY private key files (.ppk), formats 2 and 3, read and written as PuTTY does.

The public part needs no passphrase. The private part is decrypted with AES-256-CBC, and its MAC
checked, with keys from Argon2 (format 3) or SHA-1 (format 2); the ciphers, hashes and Argon2 come
from `cryptography` and `argon2-cffi`: none is written here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qimg.launcher.keys.wire import ECDSA_BITS, ED25519, RSA, Reader, WireError, mpint, string

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

MAGIC = "PuTTY-User-Key-File-"
ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_PARALLELISM = 8192, 13, 1
_CURVES = {
    "ecdsa-sha2-nistp256": "SECP256R1",
    "ecdsa-sha2-nistp384": "SECP384R1",
    "ecdsa-sha2-nistp521": "SECP521R1",
}


class PpkError(ValueError):
    """Not a usable .ppk file, or a wrong passphrase."""


@dataclass
class PpkFile:
    version: int
    algorithm: str
    encryption: str
    comment: str
    public_blob: bytes
    private_blob: bytes  # as stored: encrypted when `encryption` is not "none"
    mac: str
    kdf: dict[str, str] = field(default_factory=dict)

    @property
    def encrypted(self) -> bool:
        return self.encryption != "none"


def is_ppk(text: str) -> bool:
    return text.lstrip("\ufeff").startswith(MAGIC)


def parse(text: str) -> PpkFile:
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
    headers: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    index = 0
    try:
        while index < len(lines) and lines[index].strip():
            name, _, value = lines[index].partition(": ")
            index += 1
            if name in ("Public-Lines", "Private-Lines"):
                count = int(value)
                blobs[name] = base64.b64decode("".join(lines[index : index + count]), validate=True)
                index += count
            else:
                headers[name] = value
        version = int(next(n for n in headers if n.startswith(MAGIC))[len(MAGIC) :])
        ppk = PpkFile(
            version, headers[f"{MAGIC}{version}"], headers["Encryption"], headers.get("Comment", ""),
            blobs["Public-Lines"], blobs["Private-Lines"], headers["Private-MAC"],
            {k: v for k, v in headers.items() if k.startswith(("Key-Derivation", "Argon2"))},
        )  # fmt: skip
    except (KeyError, ValueError, StopIteration):
        raise PpkError("not a well-formed PuTTY key file (truncated, or its base64 is damaged)") from None
    if ppk.version not in (2, 3) or ppk.encryption not in ("none", "aes256-cbc"):
        raise PpkError(
            "this PuTTY key format or encryption is not supported (formats 2 and 3, none or aes256-cbc are)"
        )
    return ppk


def private_key(ppk: PpkFile, passphrase: bytes | None) -> PrivateKeyTypes:
    """The private key, after decrypting and checking the MAC (a wrong passphrase fails here)."""
    secret = (passphrase or b"") if ppk.encrypted else b""
    cipher_key, iv, mac_key = _keys(ppk, secret)
    private = ppk.private_blob
    if ppk.encrypted:
        if len(private) % 16:
            raise PpkError("the encrypted private part is damaged")
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        decryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).decryptor()
        private = decryptor.update(private) + decryptor.finalize()
    expected = _mac(ppk.version, mac_key, ppk, private)
    if not hmac.compare_digest(expected, ppk.mac.lower()):
        raise PpkError(
            "wrong passphrase" if ppk.encrypted else "the key file is damaged (its MAC does not match)"
        )
    try:
        return _build_key(ppk.algorithm, ppk.public_blob, private)
    except (WireError, ValueError):
        raise PpkError("the private part does not match the public key") from None


def dump(key: PrivateKeyTypes, comment: str, passphrase: bytes | None) -> str:
    """A format-3 .ppk as PuTTYgen writes it: Argon2id and AES-256-CBC when there is a passphrase."""
    algorithm, public_blob, private_blob = _blobs(key)
    ppk = PpkFile(3, algorithm, "aes256-cbc" if passphrase else "none", comment, public_blob, b"", "")
    if passphrase:
        ppk.kdf = {
            "Key-Derivation": "Argon2id", "Argon2-Memory": str(ARGON2_MEMORY_KIB),
            "Argon2-Passes": str(ARGON2_PASSES), "Argon2-Parallelism": str(ARGON2_PARALLELISM),
            "Argon2-Salt": os.urandom(16).hex(),
        }  # fmt: skip
        private_blob += os.urandom(-len(private_blob) % 16)  # PuTTY pads with random bytes too
    cipher_key, iv, mac_key = _keys(ppk, passphrase or b"")
    ppk.mac = _mac(3, mac_key, ppk, private_blob)
    stored = private_blob
    if passphrase:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        encryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).encryptor()
        stored = encryptor.update(private_blob) + encryptor.finalize()
    public_lines = textwrap.wrap(base64.b64encode(public_blob).decode(), 64)
    private_lines = textwrap.wrap(base64.b64encode(stored).decode(), 64)
    out = [f"{MAGIC}3: {algorithm}", f"Encryption: {ppk.encryption}", f"Comment: {comment}"]
    out += [f"Public-Lines: {len(public_lines)}", *public_lines]
    out += [f"{name}: {value}" for name, value in ppk.kdf.items()]
    out += [f"Private-Lines: {len(private_lines)}", *private_lines, f"Private-MAC: {ppk.mac}"]
    return "\n".join(out) + "\n"


def _keys(ppk: PpkFile, passphrase: bytes) -> tuple[bytes, bytes, bytes]:
    """(cipher key, IV, MAC key) as PuTTY derives them for this file's format."""
    if ppk.version == 2:
        mac_key = hashlib.sha1(b"putty-private-key-file-mac-key" + passphrase).digest()
        if not ppk.encrypted:
            return b"", b"", mac_key
        cipher_key = (
            hashlib.sha1(b"\0\0\0\0" + passphrase).digest() + hashlib.sha1(b"\0\0\0\1" + passphrase).digest()
        )
        return cipher_key[:32], bytes(16), mac_key
    if not ppk.encrypted:
        return b"", b"", b""
    from argon2.low_level import Type, hash_secret_raw

    flavours = {"Argon2id": Type.ID, "Argon2i": Type.I, "Argon2d": Type.D}
    try:
        derived = hash_secret_raw(
            passphrase, bytes.fromhex(ppk.kdf["Argon2-Salt"]), time_cost=int(ppk.kdf["Argon2-Passes"]),
            memory_cost=int(ppk.kdf["Argon2-Memory"]), parallelism=int(ppk.kdf["Argon2-Parallelism"]),
            hash_len=80, type=flavours[ppk.kdf["Key-Derivation"]],
        )  # fmt: skip
    except (KeyError, ValueError):
        raise PpkError("the key file's Argon2 parameters are damaged") from None
    return derived[:32], derived[32:48], derived[48:]


def _mac(version: int, key: bytes, ppk: PpkFile, private_plain: bytes) -> str:
    data = b"".join(
        string(part)
        for part in (
            ppk.algorithm.encode(),
            ppk.encryption.encode(),
            ppk.comment.encode(),
            ppk.public_blob,
            private_plain,
        )
    )
    return hmac.new(key, data, hashlib.sha1 if version == 2 else hashlib.sha256).hexdigest()


def _build_key(algorithm: str, public_blob: bytes, private_blob: bytes) -> PrivateKeyTypes:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    public, private = Reader(public_blob), Reader(private_blob)
    if public.string().decode() != algorithm:
        raise WireError("type mismatch")
    key: PrivateKeyTypes
    if algorithm == ED25519:
        expected = public.string()
        seed = private.string()  # PuTTY stores it as a little-endian integer: trailing zeros dropped
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed.ljust(32, b"\0"))
        if _blobs(key)[1] != public_blob or len(expected) != 32:
            raise WireError("public part mismatch")
    elif algorithm == RSA:
        e, n = public.mpint(), public.mpint()
        d, p, q, iqmp = (private.mpint() for _ in range(4))
        numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), iqmp, rsa.RSAPublicNumbers(e, n))
        key = numbers.private_key()
    elif algorithm in ECDSA_BITS:
        key = ec.derive_private_key(private.mpint(), getattr(ec, _CURVES[algorithm])())
        if _blobs(key)[1] != public_blob:
            raise WireError("public part mismatch")
    else:
        raise WireError("an unsupported key type")
    return key


def _blobs(key: PrivateKeyTypes) -> tuple[str, bytes, bytes]:
    """(algorithm, public blob, private blob) in PuTTY's layout."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    algorithm, body = line.decode().split()[:2]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        private = string(seed.rstrip(b"\0"))
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        private = b"".join(mpint(v) for v in (numbers.d, numbers.p, numbers.q, numbers.iqmp))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        private = mpint(key.private_numbers().private_value)
    else:
        raise PpkError(f"{type(key).__name__} keys cannot be written as .ppk")
    return algorithm, base64.b64decode(body), private
