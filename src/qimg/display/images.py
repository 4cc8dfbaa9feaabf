"""What `render`, `build`, `check` and `push` show."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from qimg.display import plain_note, print_json, say, shown, stderr, terminal_stderr

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

    from qimg.builder.build import BuiltImage
    from qimg.builder.push import LayerProgress, Pushed
    from qimg.launcher.check import CheckResult


def dockerfile(text: str) -> None:
    sys.stdout.write(text)


def context_written(directory: Path) -> None:
    """`render --context`: where the context is, and the one command that builds it."""
    where = shown(str(directory))
    print(f"wrote the build context to {where}: docker build {shown(shlex.quote(str(directory)))}")


class BuildSteps:
    """The build's status line: each step printed (bold) and shown as the status, its output dim."""

    def __init__(self, update: Callable[[str], None], console: Console | None) -> None:
        """`console`: stderr's, or None where rich would draw nothing on it (`terminal_stderr`)."""
        self.console, self.update = console, update

    def step(self, line: str) -> None:
        self._say(line, "bold")
        self.update(line)

    def output(self, line: str) -> None:
        self._say(f"  {line}", "dim")

    def note(self, line: str) -> None:
        """What the user should know of the build's input (a key set aside)."""
        self._say(line, None)

    def _say(self, line: str, style: str | None) -> None:
        if self.console is None:
            plain_note(line)
        else:
            say(self.console, line, style)


@contextlib.contextmanager
def building() -> Iterator[BuildSteps]:
    """A status line while the build runs (a failure's last output is shown with its error), on a
    terminal: rich draws it nowhere else, and is not even imported where it sees no terminal (a
    script's build: 20 ms of a no-op rebuild)."""
    console = terminal_stderr()
    if console is None or not console.is_terminal:
        yield BuildSteps(lambda line: None, console)
        return
    with stderr().status("building") as status:
        yield BuildSteps(status.update, stderr())


def built(image: BuiltImage, as_json: bool, engine: str) -> None:
    """`engine`: where it was built, as the user chose it (`context NAME (unix://...)`)."""
    if as_json:
        print_json({**image.as_dict(), "engine": engine})
    else:
        print(
            f"built {image.tag} ({image.id[:19]}, {image.size / 1e6:.0f} MB), login user {image.user}, "
            f"on {shown(engine)} with {builder_name(image.builder)}"
        )


def builder_name(builder: str) -> str:
    return "BuildKit" if builder == "buildkit" else "the legacy builder"


def checks(ref: str, results: list[CheckResult], passed: bool, as_json: bool, engine: str) -> None:
    if as_json:
        print_json(
            {
                "image": ref,
                "passed": passed,
                "engine": engine,
                "checks": [result.as_dict() for result in results],
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg check {ref}", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(shown(result.name), "pass" if result.passed else "FAIL", shown(result.detail))
    console = Console(highlight=False, width=max(100, Console().width))
    console.print(table)
    console.print(f"engine: {shown(engine)}", markup=False, soft_wrap=True)


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


def pushed(image: Pushed, as_json: bool) -> None:
    if as_json:
        print_json(image.as_dict())
    else:
        print(image.pinned)
