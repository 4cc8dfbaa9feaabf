"""The data of tasks on Qarnot: `snapshot` and `fetch` (`run --upload/--results`, `ls --buckets` and
`stop --purge` live with their commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qimg import display
from qimg.commands.common import LocalOpt, NameArg, app, typed_path


@app.command()
def snapshot(name: NameArg, local: LocalOpt = False) -> None:
    """Upload a running task's working directory (/job) to its results bucket, now."""
    from qimg.launcher import bucket_io
    from qimg.launcher.backends import registry

    bucket = bucket_io.snapshot(name, registry.LOCAL if local else registry.DEFAULT)
    print(f"snapshot of {name} in bucket {bucket}: `qimg fetch {name} [DIR]` downloads it")


@app.command()
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
    from qimg.launcher.backends import registry

    with display.TransferBars(display.stderr()) as bars:
        fetched = bucket_io.fetch(name, directory, registry.LOCAL if local else registry.DEFAULT, bars)
    print(f"fetched {fetched.files} files ({fetched.size} bytes) from {fetched.bucket} into {fetched.target}")
