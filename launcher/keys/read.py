"""The one key reader: whatever key file a user has, normalised to one OpenSSH line per public key.

Used everywhere a key is accepted (`run --key`, the DOCKER_SSH constant, `keygen --from`). It reads
OpenSSH public key lines, RFC 4716 files (as PuTTYgen saves public keys), PuTTY .ppk files (their
public part, no passphrase needed) and, only where the caller allows it, OpenSSH private key files
to derive the public key locally. Everything else is refused with one line: private keys bound to
leave the machine, DSA, RSA under 2048 bits, damaged base64, unknown types, empty input.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path

from qimg.errors import UsageError
from qimg.files import NotRegularFile, read_regular
from qimg.launcher.keys import ppk
from qimg.launcher.keys.wire import DSA, KNOWN_TYPES, RSA, PublicKey, Reader, WireError, blob_type, key_bits

DEFAULT_KEYS = ("id_ed25519.pub", "id_rsa.pub")
MIN_RSA_BITS = 2048
MAX_KEY_FILE = 1 << 20
_RFC4716 = re.compile(r"---- BEGIN SSH2 PUBLIC KEY ----\n(.*?)---- END SSH2 PUBLIC KEY ----", re.S)
_OPENSSH_PRIVATE = re.compile(
    r"-----BEGIN OPENSSH PRIVATE KEY-----\n(.*?)-----END OPENSSH PRIVATE KEY-----", re.S
)
_PRIVATE_MARKERS = ("PRIVATE KEY-----", "PuTTY-User-Key-File")


def read_key_file(path: Path, source: str) -> str:
    """A key file's text. Only a regular file is read (a FIFO or a device would hang or never end)."""
    try:
        raw = read_regular(path, MAX_KEY_FILE)
    except NotRegularFile as error:
        raise UsageError(f"{source} is {error}: give your public key file") from None
    except OSError as error:
        raise UsageError(f"{source}: cannot read it ({error.strerror}): give your public key file") from None
    return raw.decode("utf-8", "replace").lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def public_keys(text: str, source: str, *, allow_private: bool = False) -> list[PublicKey]:
    """Every public key in the text, checked; refuses with one line naming `source` and the fix."""
    if not text.strip():
        raise UsageError(f"{source} is empty: give a public key file (ssh-ed25519 AAAA... comment)")
    if ppk.is_ppk(text):
        try:
            parsed = ppk.parse(text)
        except ppk.PpkError as error:
            raise UsageError(f"{source}: {error}") from None
        key = PublicKey(blob_type(parsed.public_blob), parsed.public_blob, parsed.comment)
        return [_checked(key, source, "the .ppk")]
    if "---- BEGIN SSH2 PUBLIC KEY ----" in text:
        blocks = _RFC4716.findall(text)
        if not blocks:
            raise UsageError(f"{source}: the RFC 4716 file is truncated or damaged (no END line)")
        return [_rfc4716(block, source) for block in blocks]
    if any(marker in text for marker in _PRIVATE_MARKERS):
        if not allow_private:
            raise UsageError(
                f"{source} is a private key: give the public one (the .pub file beside it, or "
                "`ssh-keygen -y -f KEY`); a private key is never sent"
            )
        return _from_private(text, source)
    return [_openssh_line(line, source, number) for number, line in _lines(text)]


def _lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip() and line[0] != "#"
    ]


def _openssh_line(line: str, source: str, number: int) -> PublicKey:
    where = f"{source} line {number}"
    fields = line.split()
    key_type = fields[0]
    if len(fields) < 2:
        # Never the line itself: a file given by mistake (.env, a token) would be echoed into logs.
        raise UsageError(
            f"{where} is not a public key line (TYPE BASE64 [comment]): give your public key file"
        )
    if key_type not in KNOWN_TYPES and key_type != DSA:
        raise UsageError(
            f"{where} does not start with a key type qimg knows: give an ed25519, RSA or ECDSA public key "
            "(`qimg keygen` makes one)"
        )
    if any(field in KNOWN_TYPES or field == DSA for field in fields[2:]):
        raise UsageError(f"{where} holds several keys: put one key per line")
    blob = _base64(fields[1], where)
    if blob_type(blob) != key_type:
        raise UsageError(f"{where}: the base64 does not hold a {key_type} key (damaged or pasted wrong)")
    return _checked(PublicKey(key_type, blob, " ".join(fields[2:])), source, f"line {number}")


def _rfc4716(block: str, source: str) -> PublicKey:
    comment, lines = "", iter(block.split("\n"))
    body: list[str] = []
    for first in lines:
        line = first
        while line.endswith("\\"):  # a header continued on the next line
            line = line[:-1] + next(lines, "")
        name, colon, value = line.partition(":")
        if colon and not body and re.fullmatch(r"[A-Za-z-]{1,64}", name):
            if name.lower() == "comment":
                comment = value.strip().strip('"')
            continue
        body.append(line.strip())
    blob = _base64("".join(body), source)
    return _checked(PublicKey(blob_type(blob), blob, comment), source, "the RFC 4716 key")


def _from_private(text: str, source: str) -> list[PublicKey]:
    """The public half of an OpenSSH private key file: it is stored in clear, so no passphrase is needed."""
    match = _OPENSSH_PRIVATE.search(text)
    if not match:
        raise UsageError(f"{source}: only OpenSSH private keys (BEGIN OPENSSH PRIVATE KEY) are read here")
    data = _base64(match.group(1), source)
    magic = b"openssh-key-v1\0"
    try:
        if not data.startswith(magic):
            raise WireError("magic")
        reader = Reader(data[len(magic) :])
        for _ in range(3):  # cipher, kdf, kdf options
            reader.string()
        blobs = [reader.string() for _ in range(reader.uint32())]
    except WireError:
        raise UsageError(f"{source}: the OpenSSH private key file is truncated or damaged") from None
    return [
        _checked(PublicKey(blob_type(blob), blob), source, "the private key's public half") for blob in blobs
    ]


def _base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{where}: the base64 is truncated or damaged: copy the whole key again") from None


def _checked(key: PublicKey, source: str, what: str) -> PublicKey:
    try:
        bits = key_bits(key.blob)
    except WireError as error:
        raise UsageError(
            f"{source}: {what} is truncated or damaged ({error}): copy the whole key again"
        ) from None
    if key.type == DSA:
        raise UsageError(
            f"{source}: {what} is a DSA key, which OpenSSH refuses: make an ed25519 key (`qimg keygen`)"
        )
    if key.type == RSA and bits < MIN_RSA_BITS:
        raise UsageError(
            f"{source}: {what} is an RSA key of {bits} bits, too weak: "
            "use ed25519, or RSA of 3072 bits or more"
        )
    return key


# --- the key a launch sends, and the private key beside it that ssh logs in with --------------------


@dataclass(frozen=True)
class LoginKey:
    """A key to log in with: the public keys a task gets (DOCKER_SSH), the private key ssh uses (it
    never leaves this machine: for an agent's key, the public file), and the PuTTY key, if any."""

    keys: tuple[PublicKey, ...]
    identity: Path
    ppk: Path | None = None

    @property
    def docker_ssh(self) -> str:
        """DOCKER_SSH: one OpenSSH line per key."""
        return "\n".join(key.line for key in self.keys)


def default_key_path() -> Path:
    ssh_dir = Path.home() / ".ssh"
    for name in DEFAULT_KEYS:
        if (ssh_dir / name).is_file():
            return ssh_dir / name
    raise UsageError(
        f"no ssh key in {ssh_dir} ({' or '.join(DEFAULT_KEYS)}): make one with `qimg keygen` "
        "(or ssh-keygen -t ed25519), or pass --key PATH.pub"
    )


def read_login_key(path: Path | None) -> LoginKey:
    """The key of `--key PATH` (default ~/.ssh/id_ed25519.pub, then id_rsa.pub), checked."""
    path = path or default_key_path()
    source = f"--key {path}"
    keys = tuple(public_keys(read_key_file(path, source), source))
    identity = _identity_beside(path, source)
    ppk_file = path if path.suffix == ".ppk" else identity.with_name(identity.name + ".ppk")
    return LoginKey(keys, identity, ppk_file if ppk_file.is_file() else None)


def _identity_beside(public: Path, source: str) -> Path:
    private = public.with_suffix("") if public.suffix in (".pub", ".ppk") else None
    if private is not None and private.is_file():
        return private
    if os.environ.get("SSH_AUTH_SOCK") and public.suffix == ".pub":
        return public  # ssh uses the agent's private key that matches this public one
    raise UsageError(
        f"{source}: no OpenSSH private key beside it ({private or public.name + ' without its suffix'}) "
        "and no ssh-agent: qimg logs in with it to check the task is ready "
        "(`qimg keygen --from KEY.ppk` makes one)"
    )
