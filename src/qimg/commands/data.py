"""The data of tasks on Qarnot: `snapshot` and `fetch` (`run --upload/--results`, `ls --buckets` and
`stop --purge` live with their commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qimg.commands.common import DATA, LocalOpt, NameArg, app, backend_of, typed_path
from qimg.display import data as display
from qimg.display import stderr


@app.command(rich_help_panel=DATA)
def snapshot(name: NameArg, local: LocalOpt = False) -> None:
    """Upload a running task's working directory (/job) to its results bucket, now."""
    from qimg.launcher import bucket_io

    display.snapshot_taken(name, bucket_io.snapshot(name, backend_of(local)))


@app.command(rich_help_panel=DATA)
def fetch(
    name: Annotated[str, typer.Argument(help="Task name, or a results bucket (`qimg ls --buckets`).")],
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Where to (default: the task's --results directory, else ./NAME-results).", parser=typed_path
        ),
    ] = None,
    local: LocalOpt = False,
) -> None:
    """Download a task's results bucket: what its last snapshot, its end or its cancellation uploaded."""
    from qimg.launcher import bucket_io

    with display.TransferBars(stderr()) as bars:
        fetched = bucket_io.fetch(name, directory, backend_of(local), bars)
    display.fetched(fetched)
