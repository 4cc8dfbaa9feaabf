"""The `qimg` command line: its entry point. The commands live in `qimg.commands.*` (options, output
and exit codes): each checks what only a terminal knows, makes one call into builder/ or launcher/,
and renders the result.

Heavy libraries (docker, jinja2, rich, qarnot) are imported inside the commands that use them, so
that `qimg --help` starts in a few tens of milliseconds.
"""

from __future__ import annotations

import gc
import sys
from typing import Annotated, NoReturn

import typer

from qimg import __version__, notices
from qimg.commands.common import app
from qimg.errors import Interrupted, QimgError
from qimg.launcher import signals

# The modules of qimg.commands. Each registers its commands on `app` when imported, each under its
# group (`rich_help_panel`): `qimg --help` lists the groups in the order of the work (`common.GROUPS`),
# and within a group the commands in the order they were registered (this order, then each module's).
COMMAND_MODULES = ("images", "run", "notebook", "tasks", "workspace", "data", "account", "doctor", "keys")
# The module of each command: `qimg NAME ...` imports that one alone (the others' imports, and typer
# making their options, would cost every command 15 ms). Help, --version and a name not here import
# them all.
COMMANDS = {
    "render": "images", "build": "images", "check": "images", "push": "images",
    "run": "run", "jupyter": "notebook",
    "ssh": "tasks", "tunnel": "tasks", "logs": "tasks", "stop": "tasks", "ls": "tasks", "ssh-config": "tasks",
    "cp": "workspace", "code": "workspace", "snapshot": "data", "fetch": "data",
    "profiles": "account", "hardware": "account", "account": "account", "doctor": "doctor", "keygen": "keys",
}  # fmt: skip


def register_commands(args: list[str]) -> None:
    """Register the command `args` name (its module), or every command."""
    named = COMMANDS.get(args[0]) if args else None
    for module in (named,) if named else COMMAND_MODULES:
        # The statement's own path, which `-X importtime` times and lists (importlib's does not).
        __import__(f"qimg.commands.{module}")


def _version(value: bool) -> None:
    if value:
        print(f"qimg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """ssh-ready container images for Qarnot tasks."""


def warning(text: str) -> None:
    """Where warnings go unless a live display takes them: a line on stderr, escaped (it may quote
    outside text: a record's path, a reply)."""
    from qimg.display import shown

    print(notices.line(shown(text)), file=sys.stderr, flush=True)


def report(error: QimgError) -> None:
    """The one place an error is shown: its details (the context), then its line (message and hint).
    Its text may quote outside text (a reply, a name, a build's output): shown escaped."""
    from qimg import display

    if error.details:
        console = display.stderr()
        if error.details_title:
            display.say(console, error.details_title, "red")
        for line in error.details:
            display.say(console, f"  {line}")
    print(f"qimg: error: {display.shown(str(error))}", file=sys.stderr)


def main() -> NoReturn:
    """Run the CLI; every failure the user can act on ends as one line and an exit code."""
    # Start-up makes tens of thousands of objects that live as long as the process (the command's
    # modules, classes and options) and no garbage: at the default threshold (700 new objects) the
    # collector walks them some 20 times before the command starts, 4 ms of `run --local`. A command
    # that runs for hours still collects, at every 50,000 new objects.
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    try:
        # Every command, not only those that hold a task: Ctrl-C, SIGTERM and SIGHUP raise Interrupted
        # (typer would turn a KeyboardInterrupt into a silent 130, and the other two would kill qimg
        # before any clean-up). Commands that must hold or ignore them install their own for a while.
        with signals.as_errors(), notices.to(warning):
            args = sys.argv[1:] or ["--help"]
            register_commands(args)
            code = app(args=args, standalone_mode=False)
    except typer.TyperException as error:  # options typer itself rejects (types, choices, unknown ones)
        context = getattr(error, "ctx", None)
        where = context.command_path if context is not None else "qimg"
        print(f"qimg: error: {error.format_message()} (see {where} --help)", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort:
        print("qimg: interrupted", file=sys.stderr)
        sys.exit(130)
    except Interrupted as interruption:  # what the user did, not an error of qimg's
        print(f"qimg: {interruption}", file=sys.stderr)
        sys.exit(interruption.exit_code)
    except QimgError as error:
        report(error)
        sys.exit(error.exit_code)
    finally:
        # The command has closed what it opened (context managers): the collections of interpreter
        # shutdown would only walk the object graphs of botocore and requests, 50 ms spent after the
        # work is done. Frozen objects are left to the exit.
        gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)
