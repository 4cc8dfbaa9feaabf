"""What every command module shares: the typer app, the options several commands take, and the
small terminal helpers (stdin secrets, registry credentials)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer
from typer.core import TyperGroup

from qimg.builder.spec import Distro
from qimg.errors import UsageError
from qimg.files import user_path

# The command groups, in the order of the work: `qimg --help` lists each command under its group
# (`rich_help_panel`), the groups in this order.
IMAGES, TASKS, DATA, ACCOUNT, KEYS = "Images", "Tasks", "Data", "Account", "Keys"
GROUPS = (IMAGES, TASKS, DATA, ACCOUNT, KEYS)


class _HelpFormatter(Protocol):  # what of click's formatter the listing uses
    width: int

    def section(self, name: str) -> AbstractContextManager[None]: ...
    def write_dl(self, rows: Sequence[tuple[str, str]]) -> None: ...


class _Grouped(TyperGroup):
    """Commands listed by group, each group under its own heading, without rich (which typer would
    need to draw its panels: `qimg --help` stays fast)."""

    def list_commands(self, ctx: object) -> list[str]:
        # Within a group, the order of registration (the modules' imports, then each module's order).
        return sorted(self.commands, key=lambda name: GROUPS.index(self._group(name)))

    def format_commands(self, ctx: object, formatter: _HelpFormatter) -> None:
        listed = [name for name in self.list_commands(ctx) if not self.commands[name].hidden]
        width = max(map(len, listed), default=0)  # one column for every group
        for group in GROUPS:
            rows = [
                (name.ljust(width), self.commands[name].get_short_help_str(formatter.width - 6 - width))
                for name in listed
                if self._group(name) == group
            ]
            if rows:
                with formatter.section(group):
                    formatter.write_dl(rows)

    def _group(self, name: str) -> str:
        group = getattr(self.commands[name], "rich_help_panel", None)
        if group not in GROUPS:
            raise AssertionError(f"command {name} has no group of {GROUPS}: give it rich_help_panel")
        return str(group)


app = typer.Typer(
    cls=_Grouped,
    help="ssh-ready container images for Qarnot tasks: build, check, push, run and log in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# Options shared by `render` and `build`.
BaseOpt = Annotated[str, typer.Option("--base", help="Base image.")]


# --distro's choices: auto, and every family of the Distro enum (one list to keep). Typer wants an enum
# to show and check choices; to the code the value is the plain string it is.
class _Choice(str, Enum):
    def __str__(self) -> str:
        return str(self.value)


if TYPE_CHECKING:
    DistroChoice = str
else:
    DistroChoice = _Choice("DistroChoice", [(name, name) for name in ("auto", *(f.value for f in Distro))])
DistroOpt = Annotated[
    DistroChoice,
    typer.Option("--distro", help="Distro family; auto reads /etc/os-release of a local base image."),
]
UserOpt = Annotated[
    str | None, typer.Option("--user", help="Login user to create; without it, key-only root login.")
]
UidOpt = Annotated[int, typer.Option("--uid", help="The user's uid.")]
GidOpt = Annotated[int, typer.Option("--gid", help="The user's primary gid.")]
SudoOpt = Annotated[bool, typer.Option("--sudo", help="Passwordless sudo for the user.")]
PackageOpt = Annotated[list[str] | None, typer.Option("--package", help="Extra distro package (repeatable).")]
RootLoginOpt = Annotated[
    bool | None,
    typer.Option(
        "--root-login/--no-root-login", help="Allow key-only root login (default: only without --user)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Use the local Docker engine instead of Qarnot.")]
PuttyOpt = Annotated[
    bool,
    typer.Option("--putty", help="Also print the PuTTY (plink) command: the .ppk key, the pinned host key."),
]
UsernameOpt = Annotated[
    str | None,
    typer.Option("--username", help="Registry user (with --password-stdin); else the Docker config."),
]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the registry password from standard input.")
]
NameArg = Annotated[str, typer.Argument(help="Task name.")]


def typed_path(text: str) -> Path:
    """The `parser` of every option and argument naming a local file or folder: relative and `~` paths
    made absolute once, here, so that what qimg stores (records, state) means the same from any
    directory."""
    try:
        return Path(user_path(text))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def backend_of(local: bool) -> str:
    """The backend a command uses, by its registered name: the user's `--local`, or the default."""
    from qimg.launcher.backends import registry

    return registry.LOCAL if local else registry.DEFAULT


def stdin_line() -> str:
    """A secret piped to qimg (--password-stdin, --passphrase-stdin): its first line."""
    return sys.stdin.readline().rstrip("\r\n")


def registry_auth(username: str | None, password_stdin: bool) -> tuple[str, str] | None:
    if bool(username) != password_stdin:
        raise UsageError(
            "--username and --password-stdin go together: "
            'echo "$PASSWORD" | qimg ... --username U --password-stdin'
        )
    if not username:
        return None
    password = stdin_line()
    if not password:
        raise UsageError("--password-stdin: standard input is empty: pipe the registry password into qimg")
    return username, password
