"""qimg's own ssh files: one record per launched task, and the ssh config and known_hosts made from them.

Each instance gets a `Host qimg-NAME[-i]` entry whose HostKeyAlias is that same name, so its pinned
key stays valid when Qarnot moves the instance to another gateway port: only the entry's Port and
the key change, and both files are rewritten from the records every time. The user's ~/.ssh/config is
touched only by `install_include`, on request.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qimg.errors import UsageError
from qimg.state import state_dir

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def check_task_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid --name {name!r}: use 1 to 40 lower-case letters, digits and dashes, starting with "
            "a letter or digit (it becomes the ssh host name qimg-NAME)"
        )
    return name


def alias(name: str, index: int) -> str:
    return f"qimg-{name}" if index == 0 else f"qimg-{name}-{index}"


@dataclass
class InstanceRecord:
    index: int
    host: str
    port: int
    host_keys: list[str]
    attempt: int = 0


@dataclass
class TaskRecord:
    name: str
    backend: str
    task_id: str
    user: str
    identity: str  # the private key file ssh uses; it stays on this machine
    instances: list[InstanceRecord] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TaskRecord:
        raw = dict(data)
        instances = [InstanceRecord(**item) for item in raw.pop("instances", [])]  # type: ignore[attr-defined]
        return cls(**raw, instances=instances)  # type: ignore[arg-type]


def ssh_dir() -> Path:
    return state_dir() / "ssh"


def config_path() -> Path:
    return ssh_dir() / "config"


def known_hosts_path() -> Path:
    return ssh_dir() / "known_hosts"


def _records_dir() -> Path:
    return state_dir() / "tasks"


def load(name: str) -> TaskRecord | None:
    try:
        return TaskRecord.from_dict(json.loads((_records_dir() / f"{name}.json").read_text()))
    except FileNotFoundError:
        return None


def records() -> list[TaskRecord]:
    directory = _records_dir()
    paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
    return [TaskRecord.from_dict(json.loads(path.read_text())) for path in paths]


def save(record: TaskRecord) -> None:
    _atomic_write(_records_dir() / f"{record.name}.json", json.dumps(asdict(record), indent=1) + "\n")
    write_files()


def forget(name: str) -> None:
    (_records_dir() / f"{name}.json").unlink(missing_ok=True)
    write_files()


def write_files() -> None:
    """Both ssh files, from every record: a refreshed instance replaces its old entry and key."""
    entries: list[str] = []
    pins: list[str] = []
    known_hosts = known_hosts_path()
    for record in records():
        for instance in record.instances:
            host = alias(record.name, instance.index)
            entries.append(
                f"Host {host}\n"
                f"    HostName {instance.host}\n"
                f"    Port {instance.port}\n"
                f"    User {record.user}\n"
                f"    IdentityFile {_quoted(record.identity)}\n"
                "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {_quoted(str(known_hosts))}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                f"    HostKeyAlias {host}\n"
            )
            pins.extend(f"{host} {key}\n" for key in instance.host_keys)
    header = "# Written by qimg from its task records; rewritten at every launch and refresh.\n"
    _atomic_write(config_path(), header + "\n".join(entries))
    _atomic_write(known_hosts, "".join(pins))


def ssh_argv(host: str, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    """ssh to a qimg entry, reading only qimg's config (the user's `Host *` cannot override it)."""
    return ["ssh", "-F", str(config_path()), *options, host, *command]


def putty_argv(record: TaskRecord, instance: InstanceRecord, options: tuple[str, ...] = ()) -> list[str]:
    """The plink equivalent of an entry, for PuTTY users: the same host key pinned by its fingerprint,
    and the .ppk beside the identity (`qimg keygen --ppk` writes it there)."""
    from qimg.launcher.keys import public_keys

    pins = [
        f"-hostkey {public_keys(key, 'the pinned host key')[0].fingerprint}" for key in instance.host_keys
    ]
    return [
        "plink", "-ssh", "-P", str(instance.port), "-l", record.user,
        "-i", str(Path(record.identity).with_suffix(".ppk")),
        *" ".join(pins).split(), *options, instance.host,
    ]  # fmt: skip


def printable(argv: list[str]) -> str:
    home = str(Path.home())
    return " ".join(
        "~" + shlex.quote(part[len(home) :]) if part.startswith(home + "/") else shlex.quote(part)
        for part in argv
    )


def install_include(user_config: Path) -> bool:
    """Add `Include <qimg's config>` at the top of the user's ssh config; False if it is already there."""
    line = f"Include {_quoted(str(config_path()))}\n"
    try:
        current = user_config.read_text()
    except FileNotFoundError:
        current = ""
    if line in current.splitlines(keepends=True):
        return False
    if not config_path().exists():
        write_files()
    # At the top: an Include after a `Host` line would only apply inside that block.
    _atomic_write(user_config, f"# Added by `qimg ssh-config --install`\n{line}\n{current}", mode=0o600)
    return True


def _quoted(path: str) -> str:
    return f'"{path}"' if " " in path else path


def _atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    tmp.replace(path)
