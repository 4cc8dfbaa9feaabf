"""Working on a task's files: `cp` (scp through the pinned config) and `code` (VS Code's Remote-SSH)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qimg.commands.common import TASKS, LocalOpt, NameArg, app, backend_of

InstanceOpt = Annotated[
    int, typer.Option("--instance", help="Which instance of the task (0, 1, ...).", min=0)
]


@app.command(rich_help_panel=TASKS)
def cp(
    source: Annotated[str, typer.Argument(help="NAME:PATH on a task, or a local path.")],
    target: Annotated[str, typer.Argument(help="NAME:PATH on a task, or a local path.")],
    instance: InstanceOpt = 0,
    local: LocalOpt = False,
) -> None:
    """Copy files or directories (recursively) between this machine and a task; exit code of the copy."""
    from qimg.launcher import transfer

    raise typer.Exit(transfer.copy(source, target, instance, backend_of(local)))


@app.command(rich_help_panel=TASKS)
def code(
    name: NameArg,
    path: Annotated[
        str | None,
        typer.Argument(
            help="Folder on the task (default: the image's devcontainer workspaceFolder, else the login "
            "user's home)."
        ),
    ] = None,
    print_link: Annotated[
        bool, typer.Option("--print", help="Print the vscode:// link instead of starting VS Code.")
    ] = False,
    instance: InstanceOpt = 0,
    local: LocalOpt = False,
) -> None:
    """Open a folder of a task in VS Code (Remote-SSH), through the pinned host qimg-NAME."""
    from qimg.display import note
    from qimg.display import tasks as display
    from qimg.launcher import editor

    if not print_link:
        editor.require_code()
    space = editor.workspace(name, path, instance, backend_of(local))
    hint = editor.include_hint(Path.home() / ".ssh" / "config")
    if hint:
        note(hint)
    for line in editor.extensions_note(space.extensions):
        note(line)
    if print_link:
        display.lines([space.link])
        return
    raise typer.Exit(editor.open_in_code(space))
