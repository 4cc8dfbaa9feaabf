"""What the CLI shows: status lines, progress bars and tables on a terminal, plain lines otherwise.

rich is imported here, inside the functions that draw, so that `qimg --help` does not load it.
Text from outside (the engine, a task, Qarnot's replies) goes through `shown`: no markup, no emoji
codes, no hard wrap, and no control character reaches the terminal (rich strips only a few).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.status import Status

    from qimg.builder.push import LayerProgress
    from qimg.launcher.backends.base import IdleStop, TaskView
    from qimg.launcher.bucket_io import BucketInfo
    from qimg.launcher.check import CheckResult
    from qimg.launcher.doctor import DoctorReport
    from qimg.launcher.records import TaskRecord
    from qimg.launcher.tunnels import Tunnel


# C0 but tab, DEL and C1 (ESC starts the sequences that set the title, write the clipboard or hide text),
# and the bidirectional overrides that make text read other than it is.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """Text from outside, safe for a terminal: every control character escaped (ESC as \\x1b)."""
    return _CONTROLS.sub(lambda found: ascii(found.group())[1:-1], text)


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(console: Console, line: str, style: str | None = None) -> None:
    console.print(shown(line), style=style, markup=False, emoji=False, soft_wrap=True)


def print_checks(ref: str, results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg check {ref}", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(shown(result.name), "pass" if result.passed else "FAIL", shown(result.detail))
    Console(highlight=False, width=max(100, Console().width)).print(table)


def print_tasks(backend: str, tasks: list[TaskView], now: datetime, idle_stops: dict[str, IdleStop]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg tasks on {backend}", title_justify="left")
    for column in ("name", "state", "endpoints", "age", "credits", "idle stop"):
        table.add_column(column)
    for task in tasks:
        age = int((now - task.created).total_seconds()) if task.created else None
        endpoints = " ".join(task.endpoints) or "-"
        if task.cluster:  # only the master is forwarded
            endpoints += f" (master of {task.instance_count})"
        table.add_row(
            shown(task.name), shown(task.state), shown(endpoints),
            "-" if age is None else _hours_minutes(age),
            "-" if task.credits is None else f"{task.credits:.2f} EUR",
            _idle_stop(idle_stops.get(task.id), now),
        )  # fmt: skip
    Console(highlight=False).print(table)


def print_buckets(found: list[BucketInfo], now: datetime) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="qimg buckets on qarnot", title_justify="left")
    for column in ("bucket", "task", "holds", "objects", "size", "age", "note"):
        table.add_column(column)
    for bucket in found:
        age = int((now - bucket.created).total_seconds()) if bucket.created else None
        table.add_row(
            shown(bucket.name), shown(bucket.task), shown(bucket.kind), str(bucket.objects),
            f"{bucket.size} B",
            "-" if age is None else f"{age // 3600}h{age % 3600 // 60:02d}m",
            "results not downloaded yet" if bucket.pending else "",
        )  # fmt: skip
    Console(highlight=False).print(table)


def print_doctor(report: DoctorReport, as_json: bool) -> None:
    """What `qimg doctor` found: one row per check, then the tasks it made and what they cost."""
    from rich.console import Console
    from rich.table import Table

    from qimg.launcher.doctor import CHECKS

    if as_json:
        print(json.dumps(report.as_dict()), flush=True)
    else:
        table = Table(
            title=f"qimg doctor: profile {report.profile}, image {report.image}", title_justify="left"
        )
        for column in ("check", "found"):
            table.add_column(column, overflow="fold")
        for finding in report.rows:
            table.add_row(CHECKS[finding.check], finding.answer if finding.known else f"? {finding.answer}")
        console = Console(highlight=False, width=max(100, Console().width))
        console.print(table)
        spent = "not reported" if report.credits is None else f"{report.credits:.4f} EUR"
        say(console, f"{len(report.tasks)} tasks created and deleted; credits spent: {spent}")
    for line in report.left:
        print(f"qimg: warning: {line}", file=sys.stderr)


class TransferBars:
    """One bar per transfer (what, bytes done, bytes in all) on stderr, only on a terminal. A bar goes
    when its transfer is complete, the display with the last one. Called from the transfers' threads."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.bars: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> TransferBars:
        return self

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self._close()

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.console.is_terminal:
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        with self.lock:
            if self.progress is None:
                self.progress = Progress(
                    TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    console=self.console, transient=True,
                )  # fmt: skip
                self.progress.start()
            if what not in self.bars:
                self.bars[what] = self.progress.add_task(shown(what), total=total)
            self.progress.update(self.bars[what], completed=done, total=total)
            if done >= total:
                self.progress.remove_task(self.bars.pop(what))
                if not self.bars:
                    self._close()

    def _close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.bars.clear()


def _hours_minutes(seconds: int) -> str:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _idle_stop(idle: IdleStop | None, now: datetime) -> str:
    left = idle.seconds_left(now) if idle else None
    return "-" if idle is None else "session open" if left is None else f"in {_hours_minutes(left)}"


@contextlib.contextmanager
def layer_progress(quiet: bool) -> Iterator[Callable[[LayerProgress], None]]:
    """One rich progress bar per layer, on stderr, from the first layer on: a push refused before it
    starts prints nothing but its error (a live display started and stopped leaves a blank line)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=stderr(), transient=True,
        disable=quiet,
    )  # fmt: skip
    bars: dict[str, TaskID] = {}

    def show(layer: LayerProgress) -> None:
        if not bars:
            progress.start()
        if layer.layer not in bars:
            bars[layer.layer] = progress.add_task(shown(layer.layer), total=None)
        total = layer.total or None
        progress.update(
            bars[layer.layer], description=shown(f"{layer.layer} {layer.status}"), total=total,
            completed=layer.current if total else 0,
        )  # fmt: skip

    try:
        yield show
    finally:
        if bars:
            progress.stop()


class RunReporter:
    """A live status line while the task starts, notes on stderr, the ready lines once it is ready."""

    def __init__(self, console: Console, on_ready: Callable[[TaskRecord], None]) -> None:
        self.console, self.on_ready = console, on_ready
        self.live: Status | None = None
        self.bars = TransferBars(console)

    def __enter__(self) -> RunReporter:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop_live()
        self.bars.__exit__()

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def status(self, view: TaskView, elapsed: float) -> None:
        running = f"{view.running}/{view.instance_count} instances running"
        line = shown(f"{view.name}: {view.state}, {running}, {elapsed:.0f} s")
        if self.live is None:
            self.live = self.console.status(line)
            self.live.start()
        self.live.update(line)

    def transfer(self, what: str, done: int, total: int) -> None:
        self._stop_live()  # rich draws one live display at a time: the bars take the status line's place
        self.bars(what, done, total)

    def note(self, line: str) -> None:
        self._stop_live()  # a note is printed once, above where the status line was
        say(self.console, line, "dim" if line.startswith("  ") else None)

    def ready(self, record: TaskRecord) -> None:
        self._stop_live()
        self.on_ready(record)


def print_ready(
    record: TaskRecord, as_json: bool, out: TextIO, putty: bool, tunnels: tuple[Tunnel, ...]
) -> None:
    """How to log into each instance: ssh (and plink) commands, or one JSON object."""
    from qimg.launcher import sshconfig
    from qimg.launcher.backends.base import EXECUTING  # every instance answered: the task is executing

    forwards = tuple(option for tunnel in tunnels for option in tunnel.ssh_option)
    rows = [
        {
            "index": instance.index, "alias": (host := sshconfig.alias(record.name, instance.index)),
            "host": instance.endpoint.host, "port": instance.endpoint.port, "user": record.user,
            "ssh_command": sshconfig.printable(sshconfig.config_argv(host)),
            "host_key": instance.host_keys[0] if instance.host_keys else "",
            **({"putty_command": sshconfig.printable(sshconfig.putty_argv(record, instance, forwards))}
               if putty else {}),
        }
        for instance in record.instances
    ]  # fmt: skip
    if as_json:
        print(json.dumps({
            "task": {"id": record.task_id, "name": record.name}, "backend": record.backend,
            "state": EXECUTING, "instances": rows,
        }), flush=True)  # fmt: skip
        return
    print(f"ready: task {record.name} ({record.task_id}) on {record.backend}, host keys pinned", file=out)
    for row in rows:
        print(f"  {row['ssh_command']}", file=out, flush=True)
        if putty:
            print(f"  {row['putty_command']}", file=out, flush=True)
