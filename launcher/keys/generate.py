"""`qimg keygen`: a new key pair (OpenSSH files, and a PuTTY .ppk on request), or a .ppk converted to
OpenSSH files; and the throwaway keys of `qimg check`. The cryptography is the `cryptography`
package's; no existing file is overwritten without `force`, and private key files are written 0600
from the start.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qimg.errors import UsageError
from qimg.files import atomic_write
from qimg.launcher.keys import ppk
from qimg.launcher.keys.read import LoginKey, public_keys, read_key_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

RSA_MIN_BITS, RSA_MAX_BITS, RSA_DEFAULT_BITS = 3072, 16384, 3072
# Asked for a passphrase: (prompt, required). Returns None for none; the CLI reads stdin or the terminal.
PassphraseSource = Callable[[str, bool], bytes | None]


@dataclass(frozen=True)
class WrittenKey:
    private: Path
    public: Path
    ppk: Path | None
    public_line: str
    fingerprint: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "private": str(self.private), "public": str(self.public),
            "ppk": str(self.ppk) if self.ppk else None,
            "public_line": self.public_line, "fingerprint": self.fingerprint,
        }  # fmt: skip


def targets(out: Path, with_ppk: bool, force: bool) -> tuple[Path, Path, Path | None]:
    """The files to write; refuses (before anything is written) to replace any of them without force."""
    paths = (out, out.with_name(out.name + ".pub"), out.with_name(out.name + ".ppk") if with_ppk else None)
    existing = [str(path) for path in paths if path is not None and path.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise UsageError(f"{', '.join(existing)} already {verb}: choose another --out, or pass --force")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    return paths


def generate(key_type: str, bits: int | None) -> PrivateKeyTypes:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if key_type == "ed25519":
        if bits is not None:
            raise UsageError("--bits goes with --type rsa only: an ed25519 key has a fixed size")
        return ed25519.Ed25519PrivateKey.generate()
    size = RSA_DEFAULT_BITS if bits is None else bits
    if not RSA_MIN_BITS <= size <= RSA_MAX_BITS:
        raise UsageError(f"invalid --bits {size}: an RSA key needs {RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def write(
    key: PrivateKeyTypes, paths: tuple[Path, Path, Path | None], comment: str, passphrase: bytes | None
) -> WrittenKey:
    from cryptography.hazmat.primitives import serialization

    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private_text = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    )
    public_text = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public_text.decode()} {comment}".strip()
    (public,) = public_keys(line, "the new key")
    private_path, public_path, ppk_path = paths
    atomic_write(private_path, private_text, 0o600)
    atomic_write(public_path, line + "\n", 0o644)
    if ppk_path is not None:
        atomic_write(ppk_path, ppk.dump(key, comment, passphrase), 0o600)
    return WrittenKey(private_path, public_path, ppk_path, line, public.fingerprint)


def read_ppk(text: str, source: str) -> ppk.PpkFile:
    if not ppk.is_ppk(text):
        raise UsageError(f"{source} is not a PuTTY key file (.ppk): for OpenSSH keys, use ssh-keygen -y")
    try:
        return ppk.parse(text)
    except ppk.PpkError as error:
        raise UsageError(f"{source}: {error}") from None


def from_ppk(parsed: ppk.PpkFile, source: str, passphrase: bytes | None) -> PrivateKeyTypes:
    try:
        return ppk.private_key(parsed, passphrase)
    except ppk.PpkError as error:
        raise UsageError(f"{source}: {error}") from None


def new_key_pair(
    key_type: str, bits: int | None, out: Path | None, comment: str | None, *, with_ppk: bool, force: bool,
    passphrase: PassphraseSource,
) -> WrittenKey:  # fmt: skip
    """A new pair at `out` (default ~/.ssh/id_TYPE), the comment defaulting to user@host."""
    paths = targets(out or Path.home() / ".ssh" / f"id_{key_type}", with_ppk, force)
    key = generate(key_type, bits)
    secret = passphrase("passphrase (empty for none): ", False)
    label = comment if comment is not None else f"{getpass.getuser()}@{socket.gethostname()}"
    return write(key, paths, label, secret)


def convert_ppk(
    source_file: Path, out: Path | None, comment: str | None, *, with_ppk: bool, force: bool,
    passphrase: PassphraseSource,
) -> WrittenKey:  # fmt: skip
    """OpenSSH files from a PuTTY key (beside it by default), keeping its comment and passphrase."""
    source = f"--from {source_file}"
    parsed = read_ppk(read_key_file(source_file, source), source)
    paths = targets(out or source_file.with_suffix(""), with_ppk, force)
    secret = passphrase("passphrase of the .ppk: ", parsed.encrypted)
    key = from_ppk(parsed, source, secret)
    return write(key, paths, comment if comment is not None else parsed.comment, secret)


def throwaway_key(directory: Path, comment: str = "qimg-throwaway") -> LoginKey:
    """An unencrypted ed25519 pair in `directory`, for a login that lasts one check or benchmark."""
    private = directory / "id_ed25519"
    written = write(generate("ed25519", None), (private, directory / "id_ed25519.pub", None), comment, None)
    return LoginKey(tuple(public_keys(written.public_line, "the throwaway key")), private)
