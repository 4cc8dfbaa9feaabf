"""What `snapshot`, `fetch` and `ls --buckets` show, and the bars of every transfer (`run --upload`,
`run --results`, `stop` bringing results down first, `fetch`)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING

from qimg.display import print_json, say, shown

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from qimg.launcher.bucket_io import BucketInfo, Fetched


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

    def note(self, line: str) -> None:
        """A line above the bars (one console draws both: rich keeps the bars below it)."""
        say(self.console, line)

    def _close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.bars.clear()


def snapshot_taken(name: str, bucket: str) -> None:
    print(f"snapshot of {name} in bucket {bucket}: `qimg fetch {name} [DIR]` downloads it")


def fetched(done: Fetched) -> None:
    print(f"fetched {done.files} files ({done.size} bytes) from {done.bucket} into {done.target}")


def buckets(backend: str, found: list[BucketInfo], now: datetime, as_json: bool) -> None:
    if as_json:
        print_json({"backend": backend, "buckets": [bucket.as_dict() for bucket in found]})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg buckets on {backend}", title_justify="left")
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
