"""`jupyter`: a task with a notebook server in it, forwarded to a local port and opened in a browser."""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qimg.commands.common import (
    TASKS,
    LocalOpt,
    PasswordStdinOpt,
    UsernameOpt,
    app,
    backend_of,
    registry_auth,
)  # fmt: skip
from qimg.commands.run import described, own_parameters, parameters
from qimg.display import tasks as display
from qimg.display import terminal_stderr
from qimg.launcher.options import LaunchOptions

if TYPE_CHECKING:
    from qimg.launcher.records import TaskRecord

# Options of `run` that a notebook session has no use for: its session is the server, its tunnel qimg's.
_NOT_HERE = ("tunnels", "no_tunnel", "connect", "command")


def jupyter(
    port: Annotated[
        int | None, typer.Option("--port", help="Local port of the notebook (default: a free one).")
    ] = None,
    lab: Annotated[bool, typer.Option("--lab", help="JupyterLab rather than the classic notebook.")] = False,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the URL only.")] = False,
    local: LocalOpt = False,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    **given: Any,
) -> None:
    """Launch a task with a Jupyter notebook server on its loopback, forwarded to a local port through
    the pinned ssh connection: print its URL (with its token), open it; Ctrl-C stops the task (unless
    --keep)."""
    from qimg.engine_api import Engine
    from qimg.launcher import notebook
    from qimg.launcher.plan import plan_launch
    from qimg.launcher.session import run_task

    server = notebook.plan_notebook(port, lab=lab, browser=not no_browser)
    options = described(
        LaunchOptions,
        given,
        backend=backend_of(local),
        registry_auth=registry_auth(username, password_stdin),
        no_tunnel=True,  # the notebook's tunnel is its own (the image's forwardPorts are run's)
    )

    def show_url(address: str) -> None:
        print(address, flush=True)

    def ready(record: TaskRecord) -> None:
        reporter.note(f"task {record.name} ready: starting {server.program} as {record.user}")

    with display.RunReporter(terminal_stderr(), ready) as reporter:
        images = Engine.from_env()
        plan = plan_launch(options, images)
        notebook.require_server(images, plan, server)
        for note in plan.notes:
            reporter.note(note)

        def session(record: TaskRecord, ssh_options: tuple[str, ...]) -> int:
            return notebook.serve(server, record, ssh_options, reporter.note, show_url, stops=not plan.keep)

        code = run_task(plan, reporter, reporter.transfer, session)
    sys.stdout.flush()
    raise typer.Exit(code)


def _signature() -> inspect.Signature:
    """The image argument, `jupyter`'s own options, then those of `run` that apply."""
    own = own_parameters(jupyter)
    image, *options = parameters(LaunchOptions)
    return inspect.Signature([image, *own, *(p for p in options if p.name not in _NOT_HERE)])


jupyter.__signature__ = _signature()  # type: ignore[attr-defined]
app.command(rich_help_panel=TASKS)(jupyter)
