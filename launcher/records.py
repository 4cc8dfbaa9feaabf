"""Task records: one JSON file per task launched from this machine, in qimg's state directory.

A record holds what ssh needs to reach the task's instances (endpoints, pinned host keys, user,
key files). Records are read back from disk, so they are untrusted input: every field is checked
before it can reach an ssh config, and a broken record is moved aside (never deleted) with one line
saying so, while the others keep working.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qimg.builder.labels import EXTENSION_ID, PORT_LABEL, is_plain_folder
from qimg.builder.spec import USER_NAME
from qimg.errors import FileError, QimgError, UsageError
from qimg.filelock import locked
from qimg.files import atomic_write, read_regular
from qimg.launcher.backends import registry
from qimg.launcher.ssh import Endpoint, is_host_key, path_problem
from qimg.state import state_dir

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_TASK_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_PATH = re.compile(r"/.{1,4095}", re.S)  # absolute; what ssh can be given is `path_problem`'s to say


class BrokenRecord(QimgError):
    """A record file that qimg did not write as it is now (set aside when it can be)."""


def is_task_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check_task_name(name: str) -> str:
    """A task name, which becomes the ssh host name qimg-NAME and a file name."""
    if _NAME.fullmatch(name):
        return name
    raise UsageError(
        f"invalid --name {name!r}: use 1 to 40 lower-case letters, digits and dashes, starting with "
        "a letter or digit (it becomes the ssh host name qimg-NAME)"
    )


@dataclass
class InstanceRecord:
    index: int
    endpoint: Endpoint
    host_keys: list[str]
    attempt: int = 0


@dataclass(frozen=True)
class ForwardedPort:
    """A tunnel `run` opened: a local port to the task's `remote` one, named by the image's
    devcontainer (`portsAttributes` label) when it names it."""

    local: int
    remote: int
    label: str | None = None

    @property
    def shown(self) -> str:
        """`8888 (Jupyter)`, or `18888:8888 (Jupyter)` as --tunnel spells another local port."""
        ports = str(self.remote) if self.local == self.remote else f"{self.local}:{self.remote}"
        return f"{ports} ({self.label})" if self.label else ports

    def as_dict(self) -> dict[str, Any]:
        return {"local": self.local, "remote": self.remote, "label": self.label}


@dataclass
class TaskRecord:
    """A launched task. Written before the request that creates it (task_id "" then): whatever happens
    next, the launch's tag finds what it created."""

    name: str
    backend: str
    task_id: str
    user: str
    identity: Path  # the private key file ssh uses; it stays on this machine
    ppk: Path | None = None  # the PuTTY key, for plink
    instances: list[InstanceRecord] = field(default_factory=list)
    launch_id: str = ""  # the tag of every task the launch created (`backends.base.launch_tag`)
    # From the image's devcontainer labels, at launch: what `ls` shows and where `qimg code` opens.
    ports: list[ForwardedPort] = field(default_factory=list)
    workspace_folder: str | None = None
    extensions: list[str] = field(default_factory=list)
    attach_hook: bool = False  # the image runs a postAttachCommand when qimg attaches a session

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "backend": self.backend, "task_id": self.task_id, "user": self.user,
            "identity": str(self.identity), "ppk": str(self.ppk) if self.ppk else None,
            "launch_id": self.launch_id,
            "ports": [port.as_dict() for port in self.ports],
            "workspace_folder": self.workspace_folder, "extensions": self.extensions,
            "attach_hook": self.attach_hook,
            "instances": [
                {"index": i.index, "host": i.endpoint.host, "port": i.endpoint.port,
                 "host_keys": i.host_keys, "attempt": i.attempt}
                for i in self.instances
            ],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> TaskRecord:
        """A record read from disk, every field checked; ValueError says which one is wrong."""
        _expect(isinstance(data, dict), "not a JSON object")
        name = _matching(data, "name", _NAME)
        backend = data.get("backend")
        _expect(isinstance(backend, str) and backend in registry.REGISTERED, "backend")
        user = data.get("user")
        _expect(user == "root" or (isinstance(user, str) and USER_NAME.fullmatch(user) is not None), "user")
        ppk = data.get("ppk")
        _expect(ppk is None or _is_key_path(ppk), "ppk")
        identity = data.get("identity")
        _expect(_is_key_path(identity), "identity")
        instances = data.get("instances")
        _expect(isinstance(instances, list) and len(instances) <= 1024, "instances")
        launch_id = data.get("launch_id", "")
        _expect(launch_id == "" or _is_id(launch_id), "launch_id")
        task_id = data.get("task_id")
        _expect(_is_id(task_id) or (task_id == "" and launch_id != ""), "task_id")  # "": being created
        ports = data.get("ports", [])
        _expect(isinstance(ports, list) and len(ports) <= _LIST_LIMIT, "ports")
        folder = data.get("workspace_folder")
        _expect(folder is None or (isinstance(folder, str) and is_plain_folder(folder)), "workspace_folder")
        extensions = data.get("extensions", [])
        _expect(
            isinstance(extensions, list) and len(extensions) <= _LIST_LIMIT
            and all(isinstance(e, str) and EXTENSION_ID.fullmatch(e) for e in extensions),
            "extensions",
        )  # fmt: skip
        attach_hook = data.get("attach_hook", False)
        _expect(isinstance(attach_hook, bool), "attach_hook")
        return cls(
            name=name, backend=str(backend), task_id=str(task_id), user=str(user),
            identity=Path(str(identity)), ppk=Path(ppk) if ppk else None,
            instances=[_instance(item) for item in instances], launch_id=str(launch_id),
            ports=[_port(item) for item in ports], workspace_folder=folder, extensions=list(extensions),
            attach_hook=attach_hook,
        )  # fmt: skip


_LIST_LIMIT = 64  # ports or extensions of one record: as many as an image's labels may list


def _port(item: Any) -> ForwardedPort:
    _expect(isinstance(item, dict), "port")
    numbers = [item.get(key) for key in ("local", "remote")]
    _expect(all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 65536 for n in numbers), "port")
    label = item.get("label")
    _expect(
        label is None or (isinstance(label, str) and PORT_LABEL.fullmatch(label) is not None), "port label"
    )
    return ForwardedPort(numbers[0], numbers[1], label)


def _instance(item: Any) -> InstanceRecord:
    _expect(isinstance(item, dict), "instance")
    numbers = [item.get(key) for key in ("index", "port", "attempt")]
    _expect(
        all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers), "instance numbers"
    )
    index, port, attempt = numbers
    keys = item.get("host_keys")
    _expect(isinstance(keys, list) and all(isinstance(k, str) and is_host_key(k) for k in keys), "host_keys")
    return InstanceRecord(index, Endpoint(item.get("host"), port), list(keys), attempt)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and _TASK_ID.fullmatch(value) is not None


def _is_key_path(value: Any) -> bool:
    """An absolute path that ssh can be given (it goes into the config's IdentityFile)."""
    return isinstance(value, str) and _PATH.fullmatch(value) is not None and path_problem(value) is None


def _matching(data: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = data.get(key)
    _expect(isinstance(value, str) and pattern.fullmatch(value) is not None, key)
    return str(value)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(what)


def records_dir() -> Path:
    return state_dir() / "tasks"


def _path(name: str) -> Path:
    return records_dir() / f"{check_task_name(name)}.json"


def load(name: str) -> TaskRecord | None:
    """The record of task `name`, None if there is none; BrokenRecord (the file moved aside) if broken,
    FileError if the records' folder cannot be read."""
    path = _path(name)
    try:
        return _read(path)
    except FileNotFoundError:
        return None


def _read(path: Path) -> TaskRecord:
    try:
        text = read_regular(path).decode("utf-8")  # a FIFO or a device is set aside, never read
    except FileNotFoundError:
        raise
    except NotADirectoryError as error:  # the folder is broken, not the record
        raise FileError.of("read", path, error) from None
    except (OSError, UnicodeDecodeError) as error:
        raise _broken(path, error) from None
    try:
        record = TaskRecord.from_dict(json.loads(text))
        if f"{record.name}.json" != path.name:
            raise ValueError("name differs from the file's")
    except (ValueError, RecursionError) as error:  # json's errors included; nesting too deep
        raise _broken(path, error) from None
    return record


def _broken(path: Path, error: Exception) -> BrokenRecord:
    """The error of an unreadable record, which is moved aside (kept for a human, out of qimg's way)
    so that it is reported once, not by every command after this one."""
    aside = path.parent / "broken" / f"{path.name}.{time.time_ns()}"
    try:
        aside.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.replace(aside)
        where = f"moved aside to {aside}"
    except OSError as failure:  # a read-only state directory: the file stays, skipped every time
        where = f"left in place ({failure.strerror})"
    name = path.stem if _NAME.fullmatch(path.stem) else "NAME"
    return BrokenRecord(
        f"task record {path} is unreadable ({str(error)[:200] or type(error).__name__}), {where}; "
        f"`qimg ls` still lists its task and `qimg stop {name}` stops it"
    )


def all_records() -> tuple[list[TaskRecord], list[str]]:
    """Every readable record, and one line for each broken one (moved aside)."""
    found: list[TaskRecord] = []
    problems: list[str] = []
    directory = records_dir()
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            found.append(_read(path))
        except FileNotFoundError:
            continue  # forgotten meanwhile by another qimg
        except BrokenRecord as error:
            problems.append(str(error))
    return found, problems


@contextlib.contextmanager
def launching(name: str) -> Iterator[None]:
    """Held by the qimg that launches task `name`, for as long as it runs: another qimg cannot take
    the name meanwhile, nor mistake the record written before the task exists for a stale one."""
    with locked(records_dir() / f".{check_task_name(name)}.lock", wait=False) as held:
        if not held:
            raise UsageError(f"--name {name}: another qimg is launching a task of that name")
        yield


def store(record: TaskRecord) -> None:
    atomic_write(_path(record.name), _text(record))


def claim(record: TaskRecord) -> bool:
    """Write the record only if no record of that name exists (atomically: of two launches of one
    name, one claims it). False when one exists."""
    path = _path(record.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return False
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(_text(record))
        except OSError:
            with contextlib.suppress(OSError):  # the write's error is the one to tell
                path.unlink()  # half a record (a full disk): the name stays free
            raise
    except OSError as error:
        raise FileError.of("write", path, error) from None
    return True


def _text(record: TaskRecord) -> str:
    return json.dumps(record.as_dict(), indent=1) + "\n"


def remove(name: str) -> None:
    path = _path(name)
    try:
        path.unlink(missing_ok=True)
    except NotADirectoryError:
        return  # no records' folder: no record
    except OSError as error:
        raise FileError.of("remove", path, error) from None
