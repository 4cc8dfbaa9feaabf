"""`qimg cp`: files and directories between this machine and a task, with scp through qimg's pinned
ssh config (so the host key is checked as for `qimg ssh`, and an open master is reused).

scp speaks the SFTP protocol (`-s`; the default since OpenSSH 9.0): the remote path is never read by a
remote shell, so names with spaces or shell characters arrive as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qimg.errors import UsageError
from qimg.files import user_path
from qimg.launcher import names, processes, records, sshconfig
from qimg.launcher.records import TaskRecord

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Operand:
    """One side of a copy: an absolute path on this machine (task None), or a path on a task."""

    task: str | None
    path: str

    def for_scp(self, host: str) -> str:
        # A local path is absolute: scp, which reads "x:y" (a colon before any slash) as remote, never
        # takes one for a host, nor for an option.
        return self.path if self.task is None else f"{host}:{self.path}"


def parse_operand(text: str) -> Operand:
    """NAME:PATH when NAME is a task name, else a local path (write ./x:y for a local name with a colon),
    made absolute (`~` too: scp reads it as a name). An empty remote PATH is the login user's home, as
    for scp."""
    if _CONTROL.search(text):
        raise UsageError(f"cp: {text[:60]!r} holds control characters: not a path")
    name, colon, path = text.partition(":")
    try:
        if colon:
            return Operand(records.check_task_name(name), path)
    except UsageError:
        pass  # not a task name: a local path with a colon, such as /data/a:b
    try:
        return Operand(None, user_path(text))
    except ValueError as error:
        raise UsageError(f"cp: {error}") from None


def plan_copy(source: str, target: str) -> tuple[Operand, Operand, str]:
    """Both sides checked, and the task's name: exactly one side is on a task."""
    src, dst = parse_operand(source), parse_operand(target)
    if src.task is not None and dst.task is not None:
        raise UsageError(
            f"cp: both {source!r} and {target!r} are on tasks: copy through this machine, in two steps"
        )
    remote = src.task or dst.task
    if remote is None:
        raise UsageError(
            f"cp: neither {source!r} nor {target!r} is on a task: write one side as NAME:PATH "
            "(use cp for local copies)"
        )
    return src, dst, remote


def instance_host(record: TaskRecord, instance: int) -> str:
    """The ssh host of the task's instance `instance`, which must exist."""
    if instance not in {each.index for each in record.instances}:
        count = len(record.instances)
        raise UsageError(
            f"--instance {instance}: task {record.name} has {count} instance{'s' * (count != 1)}, "
            "numbered from 0"
        )
    return sshconfig.alias(record.name, instance)


def scp_argv(src: Operand, dst: Operand, host: str) -> list[str]:
    """scp through qimg's config, directories recursively; `--` so that no path is read as an option.
    scp draws its progress meter only when its output is a terminal (not -q, which would also silence
    ssh's errors, such as a host key that does not match)."""
    return ["scp", "-F", str(sshconfig.config_path()), "-s", "-r", "--", src.for_scp(host), dst.for_scp(host)]


def copy(source: str, target: str, instance: int, backend: str) -> int:
    """`qimg cp SRC DST`: scp's exit code (non-zero when any file failed)."""
    src, dst, name = plan_copy(source, target)
    record = names.login(name, backend).record
    host = instance_host(record, instance)
    return processes.foreground(scp_argv(src, dst, host))
