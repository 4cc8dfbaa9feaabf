"""The public key a task gets (DOCKER_SSH) and the private key beside it that ssh logs in with.

The key is checked here, on this machine, before anything is sent: a private key given by mistake
is refused and never read further, and `ssh-keygen -l` (the real tool) must understand the line.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from qimg.errors import UsageError

DEFAULT_KEYS = ("id_ed25519.pub", "id_rsa.pub")
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class LoginKey:
    public_path: Path
    public_line: str  # "TYPE BASE64 [comment]", the one line sent as DOCKER_SSH
    identity: Path  # what ssh's IdentityFile names: the private key beside it, or the .pub for an agent


def default_key_path() -> Path:
    ssh_dir = Path.home() / ".ssh"
    for name in DEFAULT_KEYS:
        if (ssh_dir / name).is_file():
            return ssh_dir / name
    raise UsageError(
        f"no ssh key in {ssh_dir} ({' or '.join(DEFAULT_KEYS)}): make one with "
        "`ssh-keygen -t ed25519`, or pass --key PATH.pub"
    )


def read_login_key(path: Path | None) -> LoginKey:
    path = path or default_key_path()
    try:
        raw = path.read_bytes()[:65536]
    except OSError as error:
        raise UsageError(
            f"--key {path}: cannot read it ({error.strerror}): give your public key file"
        ) from None
    text = raw.decode("utf-8", "replace")
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        raise UsageError(
            f"--key {path} is a private key: give the public one ({path.name}.pub, or the output of "
            f"ssh-keygen -y -f {path}); a private key is never sent"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise UsageError(
            f"--key {path}: expected one OpenSSH public key line (ssh-ed25519 AAAA... comment), "
            f"found {len(lines)} lines"
        )
    line = lines[0]
    bits, key_type = _fingerprint(path, line)
    if key_type == "DSA":
        raise UsageError(f"--key {path}: DSA keys are refused by current OpenSSH: use an ed25519 key")
    if key_type == "RSA" and bits < MIN_RSA_BITS:
        raise UsageError(f"--key {path}: RSA key of {bits} bits is too weak: use ed25519 or RSA >= 3072 bits")
    return LoginKey(path, line, _identity_beside(path))


def _fingerprint(path: Path, line: str) -> tuple[int, str]:
    """(bits, type) as `ssh-keygen -l` reads the key; any line it does not understand is refused."""
    result = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=line + "\n", capture_output=True, text=True, check=False
    )
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) < 2 or not fields[0].isdigit():
        raise UsageError(
            f"--key {path}: not a valid OpenSSH public key line (ssh-keygen cannot read it): "
            "give the .pub file of a key pair"
        )
    return int(fields[0]), fields[-1].strip("()")


def _identity_beside(public: Path) -> Path:
    private = public.with_suffix("") if public.suffix == ".pub" else None
    if private is not None and private.is_file():
        return private
    if os.environ.get("SSH_AUTH_SOCK"):
        return public  # ssh uses the agent's private key that matches this public one
    raise UsageError(
        f"--key {public}: no private key beside it ({private or public.name + ' without .pub'}) and no "
        "ssh-agent: qimg logs in with that key to check the task is ready"
    )
