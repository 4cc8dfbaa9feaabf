"""qimg's own ssh files, made from the task records: an ssh config and a known_hosts.

Each instance gets a `Host qimg-NAME[-i]` entry whose HostKeyAlias is that same name, so its pinned
key stays valid when Qarnot moves the instance to another gateway port: only the entry's Port and
the key change, and both files are rewritten from the records every time, under a lock: of qimg
processes writing at once, the last reads what every other one stored. The user's ~/.ssh/config is
touched only by `install_include`, on request.

Connections last and are reused: keepalives find a dead link, and the first ssh to an instance
becomes a master (ControlMaster auto) that later ssh, scp and VS Code sessions share, kept 60 s after
the last one ends (ControlPersist backgrounds it, with its standard streams on /dev/null: it never
holds qimg's output or exit). A forgotten task's masters are closed (`ssh -O exit`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from qimg import notices
from qimg.errors import FileError, UsageError
from qimg.filelock import locked
from qimg.files import NotRegularFile, atomic_write, read_regular
from qimg.launcher import records
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.launcher.ssh import config_path as ssh_path
from qimg.launcher.ssh import config_word, path_problem
from qimg.state import state_dir


def alias(name: str, index: int) -> str:
    return f"qimg-{name}" if index == 0 else f"qimg-{name}-{index}"


def ssh_dir() -> Path:
    return state_dir() / "ssh"


def config_path() -> Path:
    return ssh_dir() / "config"


def known_hosts_path() -> Path:
    return ssh_dir() / "known_hosts"


def control_dir() -> Path:
    return ssh_dir() / "cm"


# ssh binds a master's socket as "PATH.<16 random characters>", then renames it to PATH; sun_path holds
# 104 bytes on macOS and the BSDs (108 on Linux), the terminating NUL included.
_SOCKET_PATH_MAX = 104 - len(".0123456789abcdef") - 1
_GLOB = re.compile(r"[\\*?\[]")  # what glob(3) reads in an Include path, each escaped by a backslash


def control_path(record: TaskRecord, instance: InstanceRecord) -> Path | None:
    """The socket of the instance's ssh master, or None (no connection reuse) when qimg's state
    directory is too deep for a Unix socket path, or its name one ssh cannot be given.

    Named after everything the entry's login depends on: a new task on a port another one used, a
    moved instance or a new pin never reuse a master authenticated under other settings."""
    login = [record.task_id, instance.index, instance.endpoint.host, instance.endpoint.port,
             record.user, str(record.identity), instance.host_keys]  # fmt: skip
    path = control_dir() / hashlib.sha256(json.dumps(login).encode()).hexdigest()[:16]
    fits = len(os.fsencode(path)) <= _SOCKET_PATH_MAX and path_problem(str(path)) is None
    return path if fits else None


def check_login_paths(identity: Path) -> None:
    """Before a launch: every path its logins give ssh can be written for it (UsageError otherwise),
    so that no task is created whose every login would fail until the timeout."""
    ssh_path(identity, "the key", "move the key pair to a folder without it, and pass --key")
    fix = "set {} to a folder without it"
    ssh_path(known_hosts_path(), "qimg's known_hosts file", fix.format("XDG_STATE_HOME"))
    ssh_path(tempfile.gettempdir(), "the temporary folder", fix.format("TMPDIR"))


def close_masters(record: TaskRecord, instances: list[InstanceRecord] | None = None) -> None:
    """Close the ssh masters of the record's instances (or of the given ones): a stopped task or a
    moved instance leaves no ssh process behind, and no master to a dead link is reused."""
    for instance in record.instances if instances is None else instances:
        path = control_path(record, instance)
        if path is None or not path.exists():
            continue
        # -O exit asks the master over its socket, locally: it answers even when the link is dead.
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(
                ["ssh", "-F", "/dev/null", "-o", f"ControlPath={ssh_path(path, 'the socket')}", "-O", "exit",
                 alias(record.name, instance.index)],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False,
            )  # fmt: skip


def save(record: TaskRecord) -> None:
    """Store the record and rewrite both files with it (broken records met are said: `write_files`)."""
    records.store(record)
    write_files()


def forget(name: str) -> None:
    """Drop a task that is over: its ssh masters, its record, its entries (as `save`)."""
    try:
        record = records.load(name)
    except records.BrokenRecord as broken:  # moved aside by load(): nothing of it is left to close
        notices.warn(str(broken))
    else:
        if record is not None:
            close_masters(record)
    records.remove(name)
    write_files()


def write_files() -> None:
    """Both ssh files, from every readable record: a refreshed instance replaces its old entry and key.
    A broken record is set aside, left out and said (notices), one line each; FileError if a file
    cannot be written."""
    with locked(ssh_dir() / ".lock"):
        found, problems = records.all_records()
        _write(found)
    for problem in problems:
        notices.warn(problem)


def _write(found: list[TaskRecord]) -> None:
    entries: list[str] = []
    pins: list[str] = []
    known_hosts = known_hosts_path()
    for record in found:
        for instance in record.instances:
            host = alias(record.name, instance.index)
            socket = control_path(record, instance)
            reuse = (
                f"    ControlMaster auto\n    ControlPath {ssh_path(socket, 'the socket')}\n"
                "    ControlPersist 60s\n"
                if socket
                else "    ControlMaster no\n    ControlPath none\n"
            )
            entries.append(
                f"Host {host}\n"
                f"    HostName {instance.endpoint.host}\n"
                f"    Port {instance.endpoint.port}\n"
                f"    User {record.user}\n"
                f"    IdentityFile {ssh_path(record.identity, 'the key')}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {ssh_path(known_hosts, 'the known_hosts file')}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                f"    HostKeyAlias {host}\n"
                # A dead link (a preempted instance, a gateway that forgets) is found in 45 s.
                "    ServerAliveInterval 15\n"
                "    ServerAliveCountMax 3\n"
                f"{reuse}"
            )
            pins.extend(f"{host} {key}\n" for key in instance.host_keys)
    header = "# Written by qimg from its task records; rewritten at every launch and refresh.\n"
    atomic_write(config_path(), header + "\n".join(entries))
    atomic_write(known_hosts, "".join(pins))
    _make_control_dir()


def _make_control_dir() -> None:
    """The folder of the masters' sockets: ssh does not make it."""
    folder = control_dir()
    try:
        folder.mkdir(exist_ok=True, mode=0o700)
    except FileExistsError:
        raise FileError(f"cannot make the folder {folder}: a file is in its place: move it away") from None
    except OSError as error:
        raise FileError.of("make the folder", folder, error) from None


def config_argv(host: str, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    """ssh to a qimg entry, reading only qimg's config (the user's `Host *` cannot override it)."""
    return ["ssh", "-F", str(config_path()), *options, host, *command]


def putty_argv(record: TaskRecord, instance: InstanceRecord, options: tuple[str, ...] = ()) -> list[str]:
    """The plink equivalent of an entry, for PuTTY users: the same host key pinned by its fingerprint,
    and the record's .ppk (`qimg keygen --ppk` writes one beside the private key)."""
    from qimg.launcher.keys.read import public_keys

    pins = [
        f"-hostkey {public_keys(key, 'the pinned host key')[0].fingerprint}" for key in instance.host_keys
    ]
    ppk = record.ppk or Path(f"{record.identity}.ppk")  # where `qimg keygen --ppk` would write it
    return [
        "plink", "-ssh", "-P", str(instance.endpoint.port), "-l", record.user, "-i", str(ppk),
        *" ".join(pins).split(), *options, instance.endpoint.host,
    ]  # fmt: skip


@dataclass(frozen=True)
class InstanceLogin:
    """How to log into one instance of a task: what `qimg run` prints once the task is ready."""

    index: int
    alias: str
    host: str
    port: int
    user: str
    ssh_command: str
    host_key: str  # the first pinned ("" when none)
    putty_command: str | None  # asked for with --putty

    def as_dict(self) -> dict[str, object]:
        return {
            key: value for key, value in asdict(self).items() if key != "putty_command" or value is not None
        }


def logins(record: TaskRecord, putty: bool, forwards: tuple[str, ...] = ()) -> list[InstanceLogin]:
    """Each instance's login, printable: ssh through qimg's config, and with `putty` plink too (it
    reads no config: the tunnels' `forwards` are on its command line)."""
    return [
        InstanceLogin(
            index=instance.index,
            alias=(host := alias(record.name, instance.index)),
            host=instance.endpoint.host,
            port=instance.endpoint.port,
            user=record.user,
            ssh_command=printable(config_argv(host)),
            host_key=instance.host_keys[0] if instance.host_keys else "",
            putty_command=printable(putty_argv(record, instance, forwards)) if putty else None,
        )
        for instance in record.instances
    ]


def printable(argv: list[str]) -> str:
    home = str(Path.home())
    return " ".join(
        "~" + shlex.quote(part[len(home) :]) if part.startswith(home + "/") else shlex.quote(part)
        for part in argv
    )


def include_line() -> str:
    """`Include` of qimg's config, for the user's: ssh globs the path (it expands no %-token or ${VAR}
    there), so its glob characters are escaped, and the result is one word of the config language."""
    path = str(config_path())
    if problem := path_problem(path, expanded=False):
        raise UsageError(f"qimg's ssh config {path!r}: ssh cannot be given this path: it holds {problem}")
    escaped = _GLOB.sub(r"\\\g<0>", path)  # a backslash before each
    return f"Include {config_word(escaped)}\n"


def has_include(user_config: Path) -> bool:
    """True when the user's ssh config holds the line `install_include` writes (what VS Code reads)."""
    try:
        return include_line().encode() in read_regular(user_config).splitlines(keepends=True)
    except (FileNotFoundError, NotRegularFile):  # none, or no file to hold it (a link to /dev/null)
        return False
    except OSError as error:
        raise FileError.of("read", user_config, error) from None


def install_include(user_config: Path) -> bool:
    """Add `Include <qimg's config>` at the top of the user's ssh config; False if it is already there.
    A symbolic link stays one: its target gets the line. The file is kept byte for byte below it."""
    line = include_line().encode()
    try:
        current = read_regular(user_config)
    except FileNotFoundError:
        current = b""
    except NotRegularFile as error:  # `~/.ssh/config -> /dev/null` is common: writing there would replace it
        raise FileError(
            f"cannot add the Include line to {user_config}: it is {error}; link it to a regular file, or add "
            f"`{include_line().strip()}` to the config ssh reads yourself"
        ) from None
    except OSError as error:
        raise FileError.of("read", user_config, error) from None
    if line in current.splitlines(keepends=True):
        return False
    # At the top: an Include after a `Host` line would only apply inside that block.
    atomic_write(user_config, b"# Added by `qimg ssh-config --install`\n%s\n%s" % (line, current))
    return True
