"""`render`, `build`, `check`, `push`: images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from qimg import docker_context
from qimg.builder.spec import DEFAULT_BASE, DEFAULT_ID, ImageSpec
from qimg.commands.common import (
    IMAGES,
    BaseOpt,
    DistroOpt,
    GidOpt,
    JsonOpt,
    PackageOpt,
    PasswordStdinOpt,
    RootLoginOpt,
    SudoOpt,
    UidOpt,
    UsernameOpt,
    UserOpt,
    app,
    registry_auth,
    typed_path,
)  # fmt: skip
from qimg.display import images as display
from qimg.errors import FileError, UsageError
from qimg.files import atomic_write


@app.command(rich_help_panel=IMAGES)
def render(
    base: BaseOpt = DEFAULT_BASE, distro: DistroOpt = "auto", user: UserOpt = None,
    uid: UidOpt = DEFAULT_ID, gid: GidOpt = DEFAULT_ID, sudo: SudoOpt = False, package: PackageOpt = None,
    root_login: RootLoginOpt = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here, not stdout.", parser=typed_path)
    ] = None,
    context: Annotated[
        Path | None,
        typer.Option(
            "--context", metavar="DIR", parser=typed_path,
            help="Write the whole build context (Dockerfile and the files it copies) into DIR, a new or "
            "empty folder, for docker build, podman build or kaniko.",
        ),
    ] = None,
) -> None:  # fmt: skip
    """Print the Dockerfile of an ssh-ready image, or write its whole build context (--context)."""
    from qimg.builder import distro as distros
    from qimg.builder.render import render_dockerfile, write_context

    if output is not None and context is not None:
        raise UsageError(
            "-o and --context go apart: -o writes the Dockerfile alone, --context DIR the Dockerfile and "
            "the files it copies"
        )
    spec = ImageSpec.create(
        base=base, user=user, uid=uid, gid=gid, sudo=sudo, packages=package or [], root_login=root_login
    )
    spec = replace(spec, distro=distros.resolve(distro, base))
    if context is not None:
        try:
            write_context(spec, context)
        except FileError as error:
            raise UsageError(f"--context: {error}") from None
        display.context_written(context)
        return
    text = render_dockerfile(spec)
    if output is None:
        display.dockerfile(text)
        return
    try:
        atomic_write(output, text, mode=0o644)
    except FileError as error:
        raise UsageError(f"-o: {error}") from None


@app.command(rich_help_panel=IMAGES)
def build(
    base: BaseOpt = DEFAULT_BASE, distro: DistroOpt = "auto", user: UserOpt = None,
    uid: UidOpt = DEFAULT_ID, gid: GidOpt = DEFAULT_ID, sudo: SudoOpt = False, package: PackageOpt = None,
    root_login: RootLoginOpt = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Image name (default qimg/USER:latest).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Build every step again.")] = False,
    pull: Annotated[bool, typer.Option("--pull", help="Pull a newer base image first.")] = False,
    as_json: JsonOpt = False,
    devcontainer: Annotated[
        bool,
        typer.Option(
            "--devcontainer",
            help="Build from a devcontainer.json, PATH (default: .devcontainer/devcontainer.json, then "
            ".devcontainer.json): its image or Dockerfile, users, environment, features, ports and commands.",
        ),
    ] = False,
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[PATH]", parser=typed_path, show_default=False,
            help="With --devcontainer: the devcontainer.json, or the project folder holding it.",
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore", metavar="KEY",
            help="With --devcontainer: set aside a key of the file that qimg refuses (repeatable).",
        ),
    ] = None,
) -> None:  # fmt: skip
    """Build an ssh-ready image (with BuildKit where docker buildx is installed)."""
    from qimg.builder.build import BuildOptions
    from qimg.builder.build import build as build_image

    if devcontainer:
        _build_devcontainer(path, tuple(ignore or ()), tag, no_cache, pull, as_json, {
            "--base": base != DEFAULT_BASE, "--distro": distro != "auto", "--user": user is not None,
            "--uid": uid != DEFAULT_ID, "--gid": gid != DEFAULT_ID, "--sudo": sudo,
            "--package": bool(package), "--root-login/--no-root-login": root_login is not None,
        })  # fmt: skip
        return
    if ignore or path:
        what = "--ignore" if ignore else f"the argument {path}"
        raise UsageError(f"{what} goes with --devcontainer: qimg build --devcontainer [PATH]")
    # Every option is checked before the engine is touched: bad input starts nothing.
    spec = ImageSpec.create(
        base=base, user=user, uid=uid, gid=gid, sudo=sudo, packages=package or [], root_login=root_login
    )
    # A signal ends the build through its clean-up (the temporary context goes): cli.main makes
    # SIGINT, SIGTERM and SIGHUP raise Interrupted. A failure's last output is shown by cli.main.
    with display.building() as steps:
        built = build_image(spec, distro, tag, BuildOptions(no_cache, pull, steps.step, steps.output))
    display.built(built, as_json, docker_context.resolve().described)


def _build_devcontainer(
    path: Path | None, ignore: tuple[str, ...], tag: str | None, no_cache: bool, pull: bool, as_json: bool,
    given: dict[str, bool],
) -> None:  # fmt: skip
    """`build --devcontainer [PATH]`: the image and its user come from the file, not from options."""
    from qimg.builder import devcontainer, devcontainer_build
    from qimg.builder.build import BuildOptions

    clashing = [option for option, present in given.items() if present]
    if clashing:
        raise UsageError(
            f"--devcontainer takes the image and its user from devcontainer.json: leave out {clashing[0]}"
        )
    config = devcontainer.read(path, ignore)
    with display.building() as steps:
        for key in config.set_aside:
            steps.note(f"{config.path.name}: {key} set aside: {devcontainer.why_set_aside(key)}")
        built = devcontainer_build.build(config, tag, BuildOptions(no_cache, pull, steps.step, steps.output))
    display.built(built, as_json, docker_context.resolve().described)


@app.command(rich_help_panel=IMAGES)
def check(
    image: Annotated[str | None, typer.Argument(help="Image to check (default: the last one built).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for sshd.")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Smoke-test an image: start it as Qarnot would, log in with ssh, check what matters."""
    from qimg.launcher.check import check as check_image

    ref, results = check_image(image, timeout)
    passed = all(result.passed for result in results)
    display.checks(ref, results, passed, as_json, docker_context.resolve().described)
    if not passed:
        raise typer.Exit(1)


@app.command(rich_help_panel=IMAGES)
def push(
    image: Annotated[str | None, typer.Argument(help="Image to push (default: the last one built).")] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Push as this REGISTRY/NAME:TAG (retags first).")
    ] = None,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Push an image to its registry and prove it arrived: prints REF@sha256:..."""
    from qimg.builder.push import push as push_image

    auth = registry_auth(username, password_stdin)
    with display.layer_progress(as_json) as show:  # a signal (Interrupted): the retag made is undone
        pushed = push_image(image, to, auth, on_progress=show)
    display.pushed(pushed, as_json)
