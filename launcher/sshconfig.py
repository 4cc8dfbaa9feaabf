"""qimg's own ssh files, made from the task records: an ssh config and a known_hosts.

Each instance gets a `Host qimg-NAME[-i]` entry whose HostKeyAlias is that same name, so its pinned
key stays valid when Qarnot moves the instance to another gateway port: only the entry's Port and
the key change, and both files are rewritten from the records every time, under a lock: of qimg
processes writing at once, the last reads what every other one stored. The user's ~/.ssh/config is
touched only by `install_include`, on request.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from qimg.errors import FileError
from qimg.files import atomic_write, locked
from qimg.launcher import records
from qimg.launcher.records import InstanceRecord, TaskRecord
from qimg.state import state_dir


def alias(name: str, index: int) -> str:
    return f"qimg-{name}" if index == 0 else f"qimg-{name}-{index}"


def ssh_dir() -> Path:
    return state_dir() / "ssh"


def config_path() -> Path:
    return ssh_dir() / "config"


def known_hosts_path() -> Path:
    return ssh_dir() / "known_hosts"


def save(record: TaskRecord) -> list[str]:
    """Store the record and rewrite both files with it. Returns the problems met (broken records set
    aside), one line each, for the user."""
    records.store(record)
    return write_files()


def forget(name: str) -> list[str]:
    """Drop the record and rewrite both files without it. Returns the problems met, as `save`."""
    records.remove(name)
    return write_files()


def write_files() -> list[str]:
    """Both ssh files, from every readable record: a refreshed instance replaces its old entry and key.
    Returns one line for each broken record, which is set aside and left out; FileError if a file
    cannot be written."""
    with locked(ssh_dir() / ".lock"):
        found, problems = records.all_records()
        _write(found)
    return problems


def _write(found: list[TaskRecord]) -> None:
    entries: list[str] = []
    pins: list[str] = []
    known_hosts = known_hosts_path()
    for record in found:
        for instance in record.instances:
            host = alias(record.name, instance.index)
            entries.append(
                f"Host {host}\n"
                f"    HostName {instance.endpoint.host}\n"
                f"    Port {instance.endpoint.port}\n"
                f"    User {record.user}\n"
                f"    IdentityFile {_quoted(str(record.identity))}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {_quoted(str(known_hosts))}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                f"    HostKeyAlias {host}\n"
            )
            pins.extend(f"{host} {key}\n" for key in instance.host_keys)
    header = "# Written by qimg from its task records; rewritten at every launch and refresh.\n"
    atomic_write(config_path(), header + "\n".join(entries))
    atomic_write(known_hosts, "".join(pins))


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


def printable(argv: list[str]) -> str:
    home = str(Path.home())
    return " ".join(
        "~" + shlex.quote(part[len(home) :]) if part.startswith(home + "/") else shlex.quote(part)
        for part in argv
    )


def install_include(user_config: Path) -> bool:
    """Add `Include <qimg's config>` at the top of the user's ssh config; False if it is already there.
    A symbolic link stays one: its target gets the line. The file is kept byte for byte below it."""
    line = f"Include {_quoted(str(config_path()))}\n".encode()
    try:
        current = user_config.read_bytes()
    except FileNotFoundError:
        current = b""
    except OSError as error:
        raise FileError.of("read", user_config, error) from None
    if line in current.splitlines(keepends=True):
        return False
    # At the top: an Include after a `Host` line would only apply inside that block.
    atomic_write(user_config, b"# Added by `qimg ssh-config --install`\n%s\n%s" % (line, current))
    return True


def _quoted(path: str) -> str:
    return f'"{path}"' if " " in path else path
