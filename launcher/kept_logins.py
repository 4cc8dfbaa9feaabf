"""Readiness logins kept for the session that follows (a command, a shell)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The login that proves an instance ready stays open as an ssh connection master when a session
# follows (a command, a shell): the session's ssh then runs over it, without a second handshake
# (0.2 s or more). The master checked the host key against the pins; its clients need no check of
# their own. Its socket lives in a private directory; every master is closed when the launch ends,
# and one that qimg could not close (killed) ends itself once idle for this long.
KEPT_LOGIN_IDLE = 30
# A master's socket is DIR/%C (40 hex digits), and ssh binds it under a name 17 bytes longer first:
# within the 104 bytes of a unix socket path (macOS; Linux allows 108), and nothing ssh would expand.
_SOCKET_DIR = re.compile(r"[A-Za-z0-9/._-]{1,46}")


@contextlib.contextmanager
def kept(wanted: bool) -> Iterator[Path | None]:
    """The private directory of the kept logins' sockets (None: logins are not kept), and every
    master in it closed on the way out, at once."""
    if not wanted:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="qimg-") as tmp:
        if not _SOCKET_DIR.fullmatch(tmp):  # a long or odd temporary directory: no master, as before
            yield None
            return
        try:
            yield Path(tmp)
        finally:
            close_masters(Path(tmp))


def close_masters(directory: Path) -> None:
    """`ssh -O exit` to every master whose socket is in the directory, at once."""
    closing = [
        subprocess.Popen(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket}", "-O", "exit", "kept"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for socket in directory.iterdir()
    ]
    for process in closing:
        process.wait()


# OpenSSH's default exchange (sntrup761x25519, post-quantum) costs a login 70 ms more than the
# classic curve25519. What is worth recording today to decrypt later is a session: a readiness login
# that carries none (not kept), or that carries one over the loopback (the local engine), prefers the
# classic exchange; a kept login to a remote host keeps the default. The list is OpenSSH's classic
# default, curve25519 first, in names every client since 7.4 knows (an unknown name, or `^`, would
# make an older client refuse the option, and the login with it).
CLASSIC_EXCHANGE = (
    "-o",
    "KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,"
    "ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
    "diffie-hellman-group18-sha512,diffie-hellman-group14-sha256",
)


def readiness_options(kept: Path | None, *, loopback: bool) -> tuple[str, ...]:
    """The options of the logins that prove instances ready: a master to keep when `kept`."""
    if kept is None:
        return CLASSIC_EXCHANGE
    master = ("-o", "ControlMaster=yes", *client_options(kept), "-o", f"ControlPersist={KEPT_LOGIN_IDLE}")
    return (*CLASSIC_EXCHANGE, *master) if loopback else master


def client_options(kept: Path | None) -> tuple[str, ...]:
    """ssh over the kept login of the same endpoint and user; ssh connects by itself if there is none."""
    return () if kept is None else ("-o", f"ControlPath={kept}/%C")
