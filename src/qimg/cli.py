"""The `qimg` command line: parse options, call builder/ or launcher/, render the result.

Heavy libraries (docker, jinja2, rich) are imported inside the commands that use them, so that
`qimg --help` starts in a few tens of milliseconds.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from qimg import __version__
from qimg.builder.spec import DEFAULT_BASE, DEFAULT_ID, Distro, ImageSpec, check_image_ref
from qimg.errors import BuildFailed, QimgError, UsageError

if TYPE_CHECKING:
    import docker
    from rich.console import Console

    from qimg.launcher.check import CheckResult

app = typer.Typer(
    help="ssh-ready container images for Qarnot tasks: render, build and check them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class DistroChoice(str, Enum):
    AUTO = "auto"
    DEBIAN = "debian"
    RHEL = "rhel"
    ALPINE = "alpine"


# Options shared by `render` and `build`.
BaseOpt = Annotated[str, typer.Option("--base", help="Base image.")]
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


def _spec(
    base: str, user: str | None, uid: int, gid: int, sudo: bool,
    package: list[str] | None, root_login: bool | None,
) -> ImageSpec:  # fmt: skip
    """The checked spec; its distro is filled in afterwards, once the engine may be asked."""
    return ImageSpec.create(
        base=base, user=user, uid=uid, gid=gid, sudo=sudo,
        packages=package or [], root_login=root_login,
    )  # fmt: skip


def _resolve_distro(choice: DistroChoice, base: str, client: docker.DockerClient | None = None) -> Distro:
    if choice is not DistroChoice.AUTO:
        return Distro(choice.value)
    from qimg import engine
    from qimg.builder import distro

    return distro.detect(client or engine.client(), base)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@app.command()
def render(
    base: BaseOpt = DEFAULT_BASE,
    distro: DistroOpt = DistroChoice.AUTO,
    user: UserOpt = None,
    uid: UidOpt = DEFAULT_ID,
    gid: GidOpt = DEFAULT_ID,
    sudo: SudoOpt = False,
    package: PackageOpt = None,
    root_login: RootLoginOpt = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the Dockerfile of an ssh-ready image."""
    from qimg.builder.render import render_dockerfile

    spec = _spec(base, user, uid, gid, sudo, package, root_login)
    spec = replace(spec, distro=_resolve_distro(distro, base))
    text = render_dockerfile(spec)
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(output.name + ".qimg-tmp")
    try:
        tmp.write_text(text)
        tmp.replace(output)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {error.strerror}") from None


@app.command()
def build(
    base: BaseOpt = DEFAULT_BASE,
    distro: DistroOpt = DistroChoice.AUTO,
    user: UserOpt = None,
    uid: UidOpt = DEFAULT_ID,
    gid: GidOpt = DEFAULT_ID,
    sudo: SudoOpt = False,
    package: PackageOpt = None,
    root_login: RootLoginOpt = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Image name (default qimg/USER:latest).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Build every step again.")] = False,
    pull: Annotated[bool, typer.Option("--pull", help="Pull a newer base image first.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build an ssh-ready image with the Docker SDK."""
    from qimg import engine
    from qimg.builder.build import build_image, default_tag
    from qimg.state import remember_last_image

    # Every option is checked before the engine is touched: bad input starts nothing.
    spec = _spec(base, user, uid, gid, sudo, package, root_login)
    image_tag = check_image_ref(tag, "--tag") if tag else default_tag(spec)
    client = engine.client()
    engine.require_image(client, base, "--base")
    spec = replace(spec, distro=_resolve_distro(distro, base, client))

    console = _stderr()
    try:
        with console.status(f"building {image_tag}") as status:

            def show_step(step: str) -> None:
                console.print(step, style="bold", markup=False)
                status.update(step)

            built = build_image(
                client, spec, image_tag, no_cache=no_cache, pull=pull, on_step=show_step,
                on_output=lambda line: console.print(f"  {line}", style="dim", markup=False),
            )  # fmt: skip
    except BuildFailed as failure:
        if failure.tail:
            console.print(f"last output of {failure.step or 'the build'}:", style="red", markup=False)
            for line in failure.tail:
                console.print(f"  {line}", markup=False)
        raise
    remember_last_image(built.tag)
    if as_json:
        print(json.dumps(built.as_dict()))
    else:
        print(f"built {built.tag} ({built.id[:19]}, {built.size / 1e6:.0f} MB), login user {built.user}")


@app.command()
def check(
    image: Annotated[str | None, typer.Argument(help="Image to check (default: the last one built).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for sshd.")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Smoke-test an image: start it as Qarnot would, log in with ssh, check what matters."""
    from qimg import engine
    from qimg.launcher.check import check_image, image_info
    from qimg.state import last_image

    ref = image or last_image()
    if ref is None:
        raise UsageError("no image given and none built yet: qimg check IMAGE, or qimg build first")
    check_image_ref(ref, "IMAGE")
    if timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout}: give a number of seconds above 0")
    client = engine.client()
    results = check_image(client, image_info(client, ref), timeout)
    passed = all(result.passed for result in results)
    if as_json:
        print(json.dumps({"image": ref, "passed": passed, "checks": [r.as_dict() for r in results]}))
    else:
        _print_table(ref, results)
    if not passed:
        raise typer.Exit(1)


def _print_table(ref: str, results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg check {ref}", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(result.name, "pass" if result.passed else "FAIL", result.detail)
    Console(highlight=False, width=max(100, Console().width)).print(table)


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


def main() -> NoReturn:
    """Run the CLI; every failure the user can act on ends as one line and an exit code."""
    try:
        code = app(args=sys.argv[1:] or ["--help"], standalone_mode=False)
    except typer.TyperException as error:  # options typer itself rejects (types, choices, unknown ones)
        context = getattr(error, "ctx", None)
        where = context.command_path if context is not None else "qimg"
        print(f"qimg: error: {error.format_message()} (see {where} --help)", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort:
        print("qimg: interrupted", file=sys.stderr)
        sys.exit(130)
    except QimgError as error:
        print(f"qimg: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
