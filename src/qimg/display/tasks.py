"""What the commands on tasks show: `run` (its status line, notes, warnings and ready lines), `ls`,
`stop`, `ssh --putty`, `logs`, `ssh-config`, and `code`'s link."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from qimg import notices
from qimg.display import plain_note, print_json, say, shown
from qimg.display.data import TransferBars

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from qimg.launcher.backends.base import IdleStop, TaskView
    from qimg.launcher.records import TaskRecord
    from qimg.launcher.sshconfig import InstanceLogin
    from qimg.launcher.tasks import Listing


class RunReporter:
    """A live status line while the task starts, notes and warnings on stderr (the status line makes
    way for them), the ready lines once it is ready."""

    def __init__(self, console: Console | None, on_ready: Callable[[TaskRecord], None]) -> None:
        """`console`: stderr's, or None where rich would draw nothing on it (`terminal_stderr`)."""
        self.console, self.on_ready = console, on_ready
        self.live: Status | None = None
        self.bars = TransferBars(console) if console is not None else None
        self.warnings = notices.to(self.warning)

    def __enter__(self) -> RunReporter:
        self.warnings.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        self.warnings.__exit__(None, None, None)
        self._stop_live()
        if self.bars is not None:
            self.bars.__exit__()

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def status(self, view: TaskView, elapsed: float) -> None:
        if self.console is None or not self.console.is_terminal:  # a transient line, which rich draws
            return  # only on a terminal: not importing its live display spares a scripted launch 20 ms
        running = f"{view.running}/{view.instance_count} instances running"
        line = shown(f"{view.name}: {view.state}, {running}, {elapsed:.0f} s")
        if self.live is None:
            self.live = self.console.status(line)
            self.live.start()
        self.live.update(line)

    def transfer(self, what: str, done: int, total: int) -> None:
        self._stop_live()  # rich draws one live display at a time: the bars take the status line's place
        if self.bars is not None:  # bars are drawn only on a terminal
            self.bars(what, done, total)

    def note(self, line: str) -> None:
        self._stop_live()  # a note is printed once, above where the status line was
        if self.console is None:
            plain_note(line)
            return
        say(self.console, line, "dim" if line.startswith("  ") else None)

    def warning(self, text: str) -> None:
        """A warning met while the task starts is one of its notes (as `qimg run` has always said them:
        the line alone, above the status line)."""
        self.note(text)

    def ready(self, record: TaskRecord) -> None:
        self._stop_live()
        self.on_ready(record)


def ready(record: TaskRecord, logins: list[InstanceLogin], as_json: bool, out: TextIO) -> None:
    """How to log into each instance: ssh (and plink) commands, or one JSON object."""
    from qimg.launcher.backends.base import EXECUTING  # every instance answered: the task is executing

    if as_json:
        print_json({
            "task": {"id": record.task_id, "name": record.name}, "backend": record.backend,
            "state": EXECUTING, "instances": [login.as_dict() for login in logins],
            "ports": [port.as_dict() for port in record.ports],
        })  # fmt: skip
        return
    print(f"ready: task {record.name} ({record.task_id}) on {record.backend}, host keys pinned", file=out)
    for login in logins:
        print(f"  {login.ssh_command}", file=out, flush=True)
        if login.putty_command is not None:
            print(f"  {login.putty_command}", file=out, flush=True)
    for port in record.ports:  # the tunnels, forwarded from here on
        print(f"  port {port.shown}: 127.0.0.1:{port.local}", file=out, flush=True)


def task_list(listing: Listing, now: datetime, as_json: bool, engine: str | None) -> None:
    """`qimg ls`: name, state, endpoints, age, credits and idle stop of each task; `engine`: the local
    backend's, as the user chose it (`context NAME (unix://...)`)."""
    if as_json:
        rows = [
            {
                **task.as_dict(now),
                "idle_stop": idle.as_dict(now) if (idle := listing.idle_stops.get(task.id)) else None,
                "ports": [port.as_dict() for port in listing.ports.get(task.id, [])],
            }
            for task in listing.tasks
        ]
        named = {"engine": engine} if engine else {}
        print_json({"backend": listing.backend, **named, "tasks": rows})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg tasks on {listing.backend}", title_justify="left")
    for column in ("name", "state", "endpoints", "ports", "age", "credits", "idle stop"):
        table.add_column(column)
    for task in listing.tasks:
        age = int((now - task.created).total_seconds()) if task.created else None
        endpoints = " ".join(task.endpoints) or "-"
        if task.cluster:  # only the master is forwarded
            endpoints += f" (master of {task.instance_count})"
        table.add_row(
            shown(task.name), shown(task.state), shown(endpoints),
            " ".join(port.shown for port in listing.ports.get(task.id, [])) or "-",
            "-" if age is None else _hours_minutes(age),
            "-" if task.credits is None else f"{task.credits:.2f} EUR",
            _idle_stop(listing.idle_stops.get(task.id), now),
        )  # fmt: skip
    console = Console(highlight=False)
    console.print(table)
    if engine:  # unwrapped, whatever the table's width: a socket path is copied from here
        console.print(f"engine: {shown(engine)}", markup=False, soft_wrap=True)


def _hours_minutes(seconds: int) -> str:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _idle_stop(idle: IdleStop | None, now: datetime) -> str:
    left = idle.seconds_left(now) if idle else None
    return "-" if idle is None else "session open" if left is None else f"in {_hours_minutes(left)}"


def stopped(backend: str, tasks: list[tuple[str, str]], say_none: bool, engine: str | None) -> None:
    """`qimg stop`: each task stopped (name, id), or, if `say_none`, that there was none; on the local
    backend, last, the engine it stopped them on."""
    for name, task_id in tasks:
        print(shown(f"stopped {name} ({task_id})"))
    if not tasks and say_none:
        print(f"no qimg task on {backend}")
    if engine:
        print(f"engine: {engine}")


def buckets_deleted(names: list[str]) -> None:
    """`qimg stop --purge`: each bucket deleted."""
    for name in names:
        print(f"deleted bucket {name}")


def lines(found: list[str]) -> None:
    """Lines to copy (commands, a link), on stdout."""
    print("\n".join(found))


def output(text: str, is_stderr: bool) -> None:
    """A task's output as it comes (`qimg logs`): its stdout on qimg's stdout, its stderr on stderr."""
    stream = sys.stderr if is_stderr else sys.stdout
    stream.write(text)
    stream.flush()


def include_installed(added: bool, config: Path, user_config: Path) -> None:
    print(f"{'added' if added else 'already there'}: Include {config} in {user_config}")
