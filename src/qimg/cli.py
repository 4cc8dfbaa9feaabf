"""The `qimg` command line: options, output and exit codes. Each command checks what only a terminal
knows, makes one call into builder/ or launcher/, and renders the result.

Heavy libraries (docker, jinja2, rich, qarnot) are imported inside the commands that use them, so
that `qimg --help` starts in a few tens of milliseconds.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from qimg import __version__, display
from qimg.builder.spec import DEFAULT_BASE, DEFAULT_ID, ImageSpec
from qimg.errors import BuildFailed, FileError, QimgError, UsageError
from qimg.files import atomic_write

app = typer.Typer(
    help="ssh-ready container images for Qarnot tasks: build, check, push, run and log in.",
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


def _warn(problems: list[str]) -> None:
    for problem in problems:  # broken state met on the way (a record set aside): said, and qimg goes on
        print(f"qimg: warning: {problem}", file=sys.stderr)


def _stdin_line() -> str:
    """A secret piped to qimg (--password-stdin, --passphrase-stdin): its first line."""
    return sys.stdin.readline().rstrip("\r\n")


@app.command()
def render(
    base: BaseOpt = DEFAULT_BASE, distro: DistroOpt = DistroChoice.AUTO, user: UserOpt = None,
    uid: UidOpt = DEFAULT_ID, gid: GidOpt = DEFAULT_ID, sudo: SudoOpt = False, package: PackageOpt = None,
    root_login: RootLoginOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here, not stdout.")] = None,
) -> None:  # fmt: skip
    """Print the Dockerfile of an ssh-ready image."""
    from qimg.builder import distro as distros
    from qimg.builder.render import render_dockerfile

    spec = ImageSpec.create(
        base=base, user=user, uid=uid, gid=gid, sudo=sudo, packages=package or [], root_login=root_login
    )
    text = render_dockerfile(replace(spec, distro=distros.resolve(distro.value, base)))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        atomic_write(output, text, mode=0o644)
    except FileError as error:
        raise UsageError(f"-o: {error}") from None


@app.command()
def build(
    base: BaseOpt = DEFAULT_BASE, distro: DistroOpt = DistroChoice.AUTO, user: UserOpt = None,
    uid: UidOpt = DEFAULT_ID, gid: GidOpt = DEFAULT_ID, sudo: SudoOpt = False, package: PackageOpt = None,
    root_login: RootLoginOpt = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Image name (default qimg/USER:latest).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Build every step again.")] = False,
    pull: Annotated[bool, typer.Option("--pull", help="Pull a newer base image first.")] = False,
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Build an ssh-ready image with the Docker SDK."""
    from qimg.builder.build import build as build_image

    # Every option is checked before the engine is touched: bad input starts nothing.
    spec = ImageSpec.create(
        base=base, user=user, uid=uid, gid=gid, sudo=sudo, packages=package or [], root_login=root_login
    )
    console = display.stderr()
    try:
        with console.status("building") as status:

            def show_step(step: str) -> None:
                display.say(console, step, "bold")
                status.update(step)

            built = build_image(
                spec, distro.value, tag, no_cache=no_cache, pull=pull, on_step=show_step,
                on_output=lambda line: display.say(console, f"  {line}", "dim"),
            )  # fmt: skip
    except BuildFailed as failure:
        if failure.tail:
            display.say(console, f"last output of {failure.step or 'the build'}:", "red")
            for line in failure.tail:
                display.say(console, f"  {line}")
        raise
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
    from qimg.launcher.check import check as check_image

    ref, results = check_image(image, timeout)
    passed = all(result.passed for result in results)
    if as_json:
        print(json.dumps({"image": ref, "passed": passed, "checks": [r.as_dict() for r in results]}))
    else:
        display.print_checks(ref, results)
    if not passed:
        raise typer.Exit(1)


def _registry_auth(username: str | None, password_stdin: bool) -> tuple[str, str] | None:
    if bool(username) != password_stdin:
        raise UsageError(
            "--username and --password-stdin go together: "
            'echo "$PASSWORD" | qimg ... --username U --password-stdin'
        )
    if not username:
        return None
    password = _stdin_line()
    if not password:
        raise UsageError("--password-stdin: standard input is empty: pipe the registry password into qimg")
    return username, password


@app.command()
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

    auth = _registry_auth(username, password_stdin)
    with display.layer_progress(as_json) as show:
        pushed = push_image(image, to, auth, on_progress=show)
    print(json.dumps(pushed.as_dict()) if as_json else pushed.pinned)


@app.command()
def run(
    image: Annotated[
        str | None,
        typer.Argument(help="Image to run (default: the last pushed, or with --local the last built)."),
    ] = None,
    ssh: Annotated[bool, typer.Option("--ssh", help="Wait until sshd accepts a login (the default).")] = True,
    local: LocalOpt = False,
    key: Annotated[
        Path | None, typer.Option("--key", help="Public key (default ~/.ssh/id_ed25519.pub or id_rsa.pub).")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Login user (default: the image's).")] = None,
    instances: Annotated[int, typer.Option("--instances", help="Number of instances.", min=1, max=64)] = 1,
    name: Annotated[str | None, typer.Option("--name", help="Task name (default USER-XXXX).")] = None,
    profile: Annotated[str, typer.Option("--profile", help="Qarnot profile.")] = "docker-network-ssh",
    tunnel: Annotated[
        list[str] | None, typer.Option("--tunnel", help="LOCAL[:REMOTE] port to forward (repeatable).")
    ] = None,
    connect: Annotated[bool, typer.Option("--connect", help="Open an ssh session when ready.")] = False,
    command: Annotated[
        str | None, typer.Option("--command", help="Run this over ssh, exit with its code.")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for sshd.")] = 600.0,
    max_time: Annotated[
        str, typer.Option("--max-time", help="Hard limit enforced inside the task: 3600, 90m, 12h, 2d.")
    ] = "12h",
    keep: Annotated[bool, typer.Option("--keep", help="Never stop the task, even on failure.")] = False,
    putty: PuttyOpt = False,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Launch an ssh-ready task, wait for a login with its host key pinned, print how to log in."""
    from qimg.launcher.plan import LaunchOptions, plan_launch
    from qimg.launcher.session import run_task
    from qimg.launcher.tunnels import parse_tunnels

    del ssh  # the only mode: there is no launch without readiness
    if connect and as_json:
        raise UsageError("--connect opens a terminal session: it does not go with --json")
    options = LaunchOptions(
        image=image, local=local, key=key, user=user, instances=instances, name=name, profile=profile,
        tunnels=tuple(tunnel or ()), connect=connect, command=command, timeout=timeout, max_time=max_time,
        keep=keep, registry_auth=_registry_auth(username, password_stdin),
    )  # fmt: skip
    # stdout belongs to --command's output: then the ready lines go to stderr.
    out = sys.stderr if command is not None else sys.stdout
    tunnels = parse_tunnels(options.tunnels)
    ready = functools.partial(display.print_ready, as_json=as_json, out=out, putty=putty, tunnels=tunnels)
    with display.RunReporter(display.stderr(), ready) as reporter:
        code = run_task(plan_launch(options), reporter)
    raise typer.Exit(code)


@app.command("ssh")
def ssh_command(
    name: NameArg,
    command: Annotated[list[str] | None, typer.Argument(help="Command to run (after --).")] = None,
    local: LocalOpt = False,
    putty: PuttyOpt = False,
) -> None:
    """Log into a task's first instance, or run a command on every instance."""
    from qimg.launcher import session

    if putty:
        print("\n".join(session.putty_commands(name, local, command)))
        return
    raise typer.Exit(session.ssh(name, local, command))


@app.command()
def tunnel(
    name: NameArg,
    ports: Annotated[str, typer.Argument(help="LOCAL[:REMOTE], e.g. 8888 or 8888:8888.")],
    local: LocalOpt = False,
) -> None:
    """Forward a local port to the task until Ctrl-C (fails loudly if the port cannot be bound)."""
    from qimg.launcher import session
    from qimg.launcher.tunnels import parse_tunnel

    console = display.stderr()
    raise typer.Exit(
        session.tunnel(name, local, parse_tunnel(ports), lambda line: display.say(console, line))
    )


@app.command()
def logs(
    name: NameArg,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new output.")] = False,
    local: LocalOpt = False,
) -> None:
    """Print a task's output (stdout, then stderr)."""
    from qimg.launcher.tasks import follow_output

    def write(text: str, is_stderr: bool) -> None:
        stream = sys.stderr if is_stderr else sys.stdout
        stream.write(text)
        stream.flush()

    follow_output(name, local, follow, write)


@app.command()
def stop(
    name: Annotated[str | None, typer.Argument(help="Task name.")] = None,
    stop_all: Annotated[bool, typer.Option("--all", help="Stop every task qimg launched there.")] = False,
    local: LocalOpt = False,
) -> None:
    """Abort and delete a task (or all of them): nothing keeps running or billing."""
    from qimg.launcher import tasks

    if bool(name) == stop_all:
        raise UsageError("name one task, or pass --all: qimg stop NAME | qimg stop --all")
    backend, stopped, problems = tasks.stop(name, local)
    _warn(problems)
    for task_name, task_id in stopped:
        print(f"stopped {task_name} ({task_id})")
    if not stopped:
        print(f"no qimg task on {backend}")


@app.command("ls")
def list_tasks(local: LocalOpt = False, as_json: JsonOpt = False) -> None:
    """List the tasks launched by qimg: name, state, endpoints, age, credits."""
    from datetime import datetime, timezone

    from qimg.launcher import records, tasks

    _warn(records.all_records()[1])
    backend, found = tasks.list_tasks(local)
    now = datetime.now(timezone.utc)
    if as_json:
        print(json.dumps({"backend": backend, "tasks": [task.as_dict(now) for task in found]}))
        return
    display.print_tasks(backend, found, now)


class KeyType(str, Enum):
    ED25519 = "ed25519"
    RSA = "rsa"


@app.command()
def keygen(
    key_type: Annotated[KeyType, typer.Option("--type", help="Key type.")] = KeyType.ED25519,
    bits: Annotated[
        int | None, typer.Option("--bits", help="RSA size (3072 to 16384; default 3072).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Private key path (default ~/.ssh/id_TYPE); .pub and .ppk beside it."),
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="Key comment (default user@host).")] = None,
    passphrase_stdin: Annotated[
        bool, typer.Option("--passphrase-stdin", help="Read the passphrase from standard input.")
    ] = False,
    ppk: Annotated[bool, typer.Option("--ppk", help="Also write a PuTTY key (format 3).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
    from_ppk: Annotated[
        Path | None, typer.Option("--from", help="Convert this PuTTY .ppk to OpenSSH files instead.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an ssh key pair (OpenSSH files, and a .ppk for PuTTY), or convert a .ppk to OpenSSH files."""
    from qimg.launcher.keys import generate

    def passphrase(prompt: str, required: bool) -> bytes | None:
        if passphrase_stdin:
            text = _stdin_line()
        elif sys.stdin.isatty():
            import getpass

            text = getpass.getpass(prompt)
        elif required:
            raise UsageError("the key is encrypted and there is no terminal to ask: pass --passphrase-stdin")
        else:
            text = ""
        return text.encode() or None

    if from_ppk is not None:
        if bits is not None or key_type is not KeyType.ED25519:
            raise UsageError("--from converts an existing key: it goes with neither --type nor --bits")
        written = generate.convert_ppk(
            from_ppk, out, comment, with_ppk=ppk, force=force, passphrase=passphrase
        )
    else:
        written = generate.new_key_pair(
            key_type.value, bits, out, comment, with_ppk=ppk, force=force, passphrase=passphrase
        )
    if as_json:
        print(json.dumps(written.as_dict()))
        return
    for path in (written.private, written.public, written.ppk):
        if path is not None:
            print(f"wrote {path}")
    print(f"{written.fingerprint} {written.public_line}")


@app.command("ssh-config")
def ssh_config(
    install: Annotated[
        bool, typer.Option("--install", help="Add one Include line for qimg's file to ~/.ssh/config.")
    ] = False,
) -> None:
    """Print where qimg's ssh config is; --install makes plain `ssh qimg-NAME` work."""
    from qimg.launcher import sshconfig

    _warn(sshconfig.write_files())  # rewritten from the records: a file moved or damaged is made again
    if not install:
        print(sshconfig.config_path())
        return
    added = sshconfig.install_include(user_config := Path.home() / ".ssh" / "config")
    print(f"{'added' if added else 'already there'}: Include {sshconfig.config_path()} in {user_config}")


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
