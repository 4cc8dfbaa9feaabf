"""The OpenSSH client, driven with pinned host keys: host-key checking is never turned off.

The start script of a qimg image prints its host keys ("qimg-host-key: TYPE BASE64"); they go
into a known_hosts file of qimg's own, and ssh checks the server against exactly those keys.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qimg.errors import NotReady, UsageError

HOST_KEY_MARKER = "qimg-host-key: "
# A host name or an IP address, and nothing ssh would read as an option or a second word.
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|[0-9A-Fa-f:]{2,39}")
_HOST_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]{1,8192}={0,2}")


@dataclass(frozen=True)
class Endpoint:
    """Where an sshd answers: a Qarnot forward, a published container port, a pinned instance."""

    host: str
    port: int

    def __post_init__(self) -> None:
        # Endpoints come from API replies, container engines and files: they reach ssh configs.
        host_ok = isinstance(self.host, str) and _HOST.fullmatch(self.host) is not None
        port_ok = isinstance(self.port, int) and not isinstance(self.port, bool) and 0 < self.port < 65536
        if not (host_ok and port_ok):
            raise ValueError(f"not an ssh endpoint: {str(self.host)[:60]!r} port {str(self.port)[:10]!r}")

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def host_keys_in(output: str) -> list[str]:
    """The "TYPE BASE64" host keys the latest start of a qimg start script printed, in order.

    The script prints its keys on consecutive lines; an instance that restarted printed a new group
    later in the same output, and only that last group is the server's key now. At most one key of
    each type is returned (the last of the group).
    """
    groups: list[list[str]] = []
    previous_was_key = False
    for line in output.splitlines():
        is_key = HOST_KEY_MARKER in line  # Qarnot prefixes task output lines with "N> "
        if is_key:
            key = line.split(HOST_KEY_MARKER, 1)[1].strip()
            if not previous_was_key:
                groups.append([])
            if is_host_key(key):
                groups[-1].append(key)
        previous_was_key = is_key
    # sshd offers one key of each type: the last printed of each is kept, so that a container that
    # prints thousands of keys pins at most one per type (a known_hosts file every login reads).
    latest = {key.split(" ", 1)[0]: key for key in (groups[-1] if groups else [])}
    return list(latest.values())


def is_host_key(text: str) -> bool:
    """ "TYPE BASE64" of a host key type qimg pins: what a container prints is checked before it is
    written into a known_hosts file."""
    return _HOST_KEY.fullmatch(text) is not None


def write_known_hosts(path: Path, entries: dict[str, list[str]]) -> None:
    """known_hosts with the given keys for each host name (as `Endpoint.known_hosts_name` spells it)."""
    lines = [f"{name} {key}" for name, keys in entries.items() for key in keys]
    path.write_text("".join(line + "\n" for line in lines))
    os.chmod(path, 0o600)


# OpenSSH reads a config line, and a `-o` option alike, as words (misc.c, argv_split): outside quotes a
# space or a tab ends a word and a `#` that starts one ends the line; quotes open and close; inside double
# quotes, \" and \\ stand for " and \. The paths of IdentityFile, UserKnownHostsFile and ControlPath are
# then expanded: %-tokens (%% is a literal %) and ${VAR}, for which there is no escape.
_NEEDS_QUOTES = re.compile(r"[ \t\"'\\#]")
_LINE_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is fine inside quotes
_NOT_UTF8 = re.compile(r"[\udc80-\udcff]")  # bytes os.fsdecode could not decode


def path_problem(path: str, *, expanded: bool = True) -> str | None:
    """What in `path` cannot be written for OpenSSH in a config line, or in a path it expands (`expanded`:
    IdentityFile, UserKnownHostsFile, ControlPath); None when every character can be."""
    if control := _LINE_BREAKING.search(path):
        return f"the control character {control.group()!r}, which ends a config line"
    if _NOT_UTF8.search(path):
        return "bytes that are not UTF-8"
    if expanded and "${" in path:
        return "'${', which ssh reads as an environment variable and has no escape for"
    return None


def config_word(text: str) -> str:
    """`text` as one word of ssh's config language: as it is, or in double quotes (with \\ and \\")
    when it holds a space, a tab, a quote, a backslash or a #."""
    if _NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_path(path: Path | str, what: str, fix: str = "move it") -> str:
    """`path` for a keyword that expands it (a literal % is %%), as one word of the config language.
    UsageError, naming `what` (the file's role), the character and the `fix`, for a path ssh cannot be
    given."""
    text = str(path)
    problem = path_problem(text)
    if problem is not None:
        raise UsageError(f"{what} {text!r}: ssh cannot be given this path: it holds {problem}; {fix}")
    return config_word(text.replace("%", "%%"))


def pinned_argv(
    endpoint: Endpoint,
    user: str,
    identity: Path,
    known_hosts: Path,
    *command: str,
    options: tuple[str, ...] = (),
) -> list[str]:
    """ssh to an endpoint that reads no user config and trusts only the keys in `known_hosts`."""
    return [
        "ssh", "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={config_path(known_hosts, 'the known_hosts file')}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", f"IdentityFile={config_path(identity, 'the key')}",
        "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR",
        *options,
        "-p", str(endpoint.port),
        "-l", user,
        endpoint.host,
        *command,
    ]  # fmt: skip


def read_banner(endpoint: Endpoint, timeout: float = 2.0) -> str:
    """The first line sshd sends, or "" when nothing answers: an open port alone proves nothing."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = connection.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return ""
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip()


def try_login(
    endpoint: Endpoint, user: str, identity: Path, known_hosts: Path, host_keys: Callable[[], list[str]],
    options: tuple[str, ...] = (),
) -> tuple[list[str], str]:  # fmt: skip
    """One readiness attempt: the `SSH-` banner, then the host keys the server printed, pinned, then a
    real `ssh ... true` (with `options`). Returns the pinned keys and "", or [] and what went wrong."""
    banner = read_banner(endpoint)
    if not banner.startswith("SSH-"):
        return [], f"not an ssh server: {banner[:60]!r}" if banner else "nothing answers"
    keys = host_keys()
    if not keys:
        return [], "sshd answers but printed no host key (not started by qimg-start?)"
    write_known_hosts(known_hosts, {endpoint.known_hosts_name: keys})
    result = subprocess.run(
        pinned_argv(endpoint, user, identity, known_hosts, "true", options=options),
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    if result.returncode == 0:
        return keys, ""
    lines = result.stderr.strip().splitlines()
    return [], lines[-1] if lines else f"ssh exited with {result.returncode}"


def wait_until_ready(
    endpoint: Endpoint,
    user: str,
    identity: Path,
    known_hosts: Path,
    host_keys: Callable[[], list[str]],
    deadline: float,
) -> list[str]:
    """`try_login` until it works: fast at first, then backing off to a cap.

    Returns the pinned keys; raises NotReady at `deadline` (a time.monotonic() value) with the last
    thing that went wrong.
    """
    pause = 0.02
    while True:
        keys, error = try_login(endpoint, user, identity, known_hosts, host_keys)
        if keys:
            return keys
        if time.monotonic() + pause > deadline:
            raise NotReady(f"sshd on {endpoint} not ready in time: {error}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
