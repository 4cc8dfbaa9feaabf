"""`run`: launch a task, wait until it answers over ssh, and use it."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qimg.commands.common import (
    TASKS,
    JsonOpt,
    LocalOpt,
    PasswordStdinOpt,
    PuttyOpt,
    UsernameOpt,
    app,
    backend_of,
    registry_auth,
    typed_path,
)  # fmt: skip
from qimg.display import tasks as display
from qimg.display import terminal_stderr
from qimg.launcher.options import FLAG, LaunchOptions

if TYPE_CHECKING:
    from qimg.launcher.records import TaskRecord


def run(
    ssh: Annotated[bool, typer.Option("--ssh", help="Wait until sshd accepts a login (the default).")] = True,
    local: LocalOpt = False,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    putty: PuttyOpt = False,
    as_json: JsonOpt = False,
    **given: Any,
) -> None:
    """Launch an ssh-ready task, wait for a login with its host key pinned, print how to log in."""
    from qimg.launcher import sshconfig
    from qimg.launcher.plan import plan_launch
    from qimg.launcher.session import run_task

    del ssh  # the only mode: there is no launch without readiness
    options = described(
        LaunchOptions, given, backend=backend_of(local),
        registry_auth=registry_auth(username, password_stdin), as_json=as_json,
    )  # fmt: skip
    # stdout belongs to --command's output: then the ready lines go to stderr.
    out = sys.stderr if options.command is not None else sys.stdout

    def ready(record: TaskRecord) -> None:  # called by run_task, once the plan below exists
        forwards = tuple(option for tunnel in plan.tunnels for option in tunnel.ssh_option)
        display.ready(record, sshconfig.logins(record, putty, forwards), as_json, out)

    # Warnings met while planning are the reporter's notes.
    with display.RunReporter(terminal_stderr(), ready) as reporter:
        plan = plan_launch(options)
        for note in plan.notes:
            reporter.note(note)
        code = run_task(plan, reporter, reporter.transfer)
    raise typer.Exit(code)


def parameters(described: type) -> list[inspect.Parameter]:
    """The typer parameters of a dataclass's fields that have a `Flag` (those of its dataclass fields
    too), in order: their type, default and help as the fields say. A tuple is a repeatable option."""
    hints = typing.get_type_hints(described)
    made = []
    for field in dataclasses.fields(described):
        kind: Any = hints[field.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            made += parameters(kind)
            continue
        flag = field.metadata.get(FLAG)
        if flag is None:
            continue
        default = field.default
        repeated = typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else None
        if repeated is not None:  # typer collects a repeated option in a list, None when not given
            kind, default = list[repeated] | None, None  # type: ignore[valid-type]
        parser = typed_path if Path in (repeated, *typing.get_args(kind), kind) else None
        info = (
            typer.Option(flag.spelling, help=flag.help, parser=parser)
            if flag.spelling
            else typer.Argument(help=flag.help)
        )
        made.append(
            inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                              annotation=Annotated[kind, info])
        )  # fmt: skip
    return made


def described(kind: type[Any], given: dict[str, Any], **known: Any) -> Any:
    """An instance of the dataclass `kind` from the values typer gave for its fields (a repeatable
    option's list as a tuple), and the `known` ones."""
    values = dict(known)
    hints = typing.get_type_hints(kind)
    for field in dataclasses.fields(kind):
        hint: Any = hints[field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[field.name] = described(hint, given)
        elif field.name in given:
            value = given[field.name]
            values[field.name] = tuple(value or ()) if typing.get_origin(hint) is tuple else value
    return kind(**values)


# How the ready task is shown: `run`'s own options, shown in --help after the launch's and before the
# worker's.
_SHOWING = ("putty", "as_json")


def own_parameters(command: Any) -> list[inspect.Parameter]:
    """A command's own options (those its function declares), keyword-only, to be shown after the
    image argument that `LaunchOptions` leads with."""
    return [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.kind is not p.VAR_KEYWORD
    ]


def _signature() -> inspect.Signature:
    """`run`'s own parameters after the image argument, then the options of `LaunchOptions`."""
    own = own_parameters(run)
    image, *options = parameters(LaunchOptions)
    worker_at = next(index for index, p in enumerate(options) if p.name == "env")
    return inspect.Signature([
        image, *(p for p in own if p.name not in _SHOWING), *options[:worker_at],
        *(p for p in own if p.name in _SHOWING), *options[worker_at:],
    ])  # fmt: skip


run.__signature__ = _signature()  # type: ignore[attr-defined]
app.command(rich_help_panel=TASKS)(run)
