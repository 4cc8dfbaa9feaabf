"""The `qimg` command line: parse options, call builder/ or launcher/, render the result.

Heavy libraries (docker, jinja2, rich) are imported inside the commands that use them, so that
`qimg --help` starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer

from qimg import __version__
from qimg.builder.spec import DEFAULT_BASE, DEFAULT_ID, Distro, ImageSpec, check_image_ref
from qimg.errors import BuildFailed, QimgError, UsageError

if TYPE_CHECKING:
    import docker
    from rich.console import Console
    from rich.progress import TaskID

    from qimg.builder.push import LayerProgress
    from qimg.builder.spec import ImageRef
    from qimg.launcher.backend import Backend, TaskRequest, TaskView
    from qimg.launcher.check import CheckResult
    from qimg.launcher.keys import LoginKey
    from qimg.launcher.launch import Tunnel
    from qimg.launcher.sshconfig import TaskRecord

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
    from qimg.state import LAST_BUILT, remember

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
    remember(LAST_BUILT, built.tag)
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
    from qimg.state import LAST_BUILT

    ref = _given_or_remembered(image, LAST_BUILT, "qimg check IMAGE, or qimg build first")
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


def _given_or_remembered(image: str | None, remembered: str, usage: str) -> str:
    """The IMAGE argument, else the image qimg remembers (the last built, or the last pushed)."""
    from qimg.state import LAST_BUILT, recall

    ref = image or recall(remembered)
    if ref is None:
        done = "built" if remembered == LAST_BUILT else "pushed"
        raise UsageError(f"no image given and none {done} yet: {usage}")
    return check_image_ref(ref, "IMAGE")


def _print_table(ref: str, results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg check {ref}", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(result.name, "pass" if result.passed else "FAIL", result.detail)
    Console(highlight=False, width=max(100, Console().width)).print(table)


# --- push ---------------------------------------------------------------------------------------

UsernameOpt = Annotated[
    str | None,
    typer.Option("--username", help="Registry user (with --password-stdin); else the Docker config."),
]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the registry password from standard input.")
]


def _stdin_line() -> str:
    """A secret piped to qimg (--password-stdin, --passphrase-stdin): its first line."""
    return sys.stdin.readline().rstrip("\r\n")


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
    from qimg import engine
    from qimg.builder.push import push_image, push_target
    from qimg.state import LAST_BUILT, LAST_PUSHED, remember

    source = _given_or_remembered(image, LAST_BUILT, "qimg push IMAGE --to REGISTRY/NAME:TAG")
    target = push_target(source, to)
    auth = _registry_auth(username, password_stdin)
    client = engine.client()
    with _layer_progress(as_json) as show:
        pushed = push_image(client, source, target, auth, on_progress=show)
    remember(LAST_PUSHED, pushed.ref)
    print(json.dumps(pushed.as_dict()) if as_json else pushed.pinned)


@contextlib.contextmanager
def _layer_progress(quiet: bool) -> Iterator[Callable[[LayerProgress], None]]:
    """One rich progress bar per layer, on stderr."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=_stderr(), transient=True,
        disable=quiet,
    )  # fmt: skip
    bars: dict[str, TaskID] = {}

    def show(layer: LayerProgress) -> None:
        if layer.layer not in bars:
            bars[layer.layer] = progress.add_task(layer.layer, total=None)
        total = layer.total or None
        progress.update(
            bars[layer.layer], description=f"{layer.layer} {layer.status}", total=total,
            completed=layer.current if total else 0,
        )  # fmt: skip

    with progress:
        yield show


# --- run and the day-to-day commands ---------------------------------------------------------------

LocalOpt = Annotated[bool, typer.Option("--local", help="Use the local Docker engine instead of Qarnot.")]
PuttyOpt = Annotated[
    bool,
    typer.Option("--putty", help="Also print the PuTTY (plink) command: the .ppk key, the pinned host key."),
]


def _backend_name(local: bool) -> str:
    return "local" if local else "qarnot"


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
    from qimg import engine
    from qimg.launcher import keys, launch, sshconfig
    from qimg.launcher.backend import TaskRequest, open_backend

    del ssh  # the only mode: there is no launch without readiness
    # Everything the user typed is checked before any request: bad input creates no task.
    if connect and (command is not None or as_json):
        raise UsageError("--connect opens a terminal session: it goes with neither --command nor --json")
    tunnels = tuple(launch.parse_tunnel(spec) for spec in tunnel or [])
    if timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout}: give a number of seconds above 0")
    max_seconds = launch.parse_duration(max_time, "--max-time")
    if name is not None:
        sshconfig.check_task_name(name)
    if not profile.strip():
        raise UsageError("--profile is empty: the Qarnot profile, e.g. docker-network-ssh")
    login_key = keys.read_login_key(key)
    for forward in tunnels:
        launch.check_port_free(forward)
    auth = _registry_auth(username, password_stdin)
    ref = _run_image(image, local)
    client = engine.client()
    backend = open_backend(_backend_name(local), client)
    if auth is None and not local and not ref.on_hub:
        auth = engine.registry_credentials(ref.registry)
    image_login = launch.image_login(client, ref, user, on_registry=not local, auth=auth)
    task_name = name or f"{image_login.user}-{secrets.token_hex(2)}"
    _refuse_name_in_use(task_name, backend)
    request = TaskRequest(
        task_name, str(ref), profile, instances,
        launch.task_constants(ref, login_key, image_login.start_command, max_seconds, auth),
    )  # fmt: skip
    record = _launch_with_status(backend, request, login_key, image_login.user, timeout, keep)
    # stdout belongs to --command's output: then the ready lines go to stderr.
    _print_ready(record, as_json, sys.stderr if command is not None else sys.stdout, putty, tunnels)
    console = _stderr()
    if not (connect or command is not None or tunnels):
        stop_hint = f"qimg stop {record.name}" + (" --local" if local else "")
        console.print(f"the task keeps running (and billing) until: {stop_hint}", markup=False)
        return
    if not (connect or command is not None):  # tunnels only: held until Ctrl-C; the task keeps running
        raise typer.Exit(launch.run_over_ssh(record, None, tunnels))
    try:
        with launch.signals_as_errors():
            code = launch.run_over_ssh(record, command, tunnels, interactive=connect)
    finally:
        if not keep:
            console.print(launch.stop_quietly(backend, record.task_id), markup=False)
            sshconfig.forget(record.name)
    raise typer.Exit(code)


def _run_image(image: str | None, local: bool) -> ImageRef:
    from qimg.builder.spec import ImageRef
    from qimg.state import LAST_BUILT, LAST_PUSHED

    given = _given_or_remembered(image, LAST_BUILT if local else LAST_PUSHED, "qimg run IMAGE")
    ref = ImageRef.parse(given, "IMAGE")
    if ref.digest:
        raise UsageError(f"{ref}: Qarnot takes a tag (DOCKER_TAG), not a digest: run REPOSITORY:TAG")
    return ref


def _launch_with_status(
    backend: Backend, request: TaskRequest, key: LoginKey, user: str, timeout: float, keep: bool
) -> TaskRecord:
    """launch(), with a live status line, and the task's own words when it fails."""
    from qimg.launcher.launch import LaunchFailed, launch

    console = _stderr()
    with console.status(f"launching {request.name} on {backend.name}") as status:

        def show(view: TaskView, elapsed: float) -> None:
            status.update(
                f"{request.name}: {view.state}, {view.running}/{view.instance_count} instances running, "
                f"{elapsed:.0f} s"
            )

        try:
            return launch(
                backend, request, key, user, timeout, keep=keep, on_status=show,
                on_note=lambda line: console.print(line, markup=False),
            )  # fmt: skip
        except LaunchFailed as failure:
            for line in failure.details:
                console.print(f"  {line}", style="dim", markup=False)
            raise


def _refuse_name_in_use(name: str, backend: Backend) -> None:
    from qimg.launcher import sshconfig
    from qimg.launcher.backend import TaskNotFound, open_backend

    record = sshconfig.load(name)
    if record is None:
        return
    owner = backend if record.backend == backend.name else open_backend(record.backend)
    try:
        alive = not owner.view(record.task_id).ended
    except TaskNotFound:
        alive = False
    if alive:
        raise UsageError(
            f"--name {name}: a task of that name is running: `qimg stop {name}`, or choose another"
        )
    sshconfig.forget(name)


def _print_ready(
    record: TaskRecord, as_json: bool, out: TextIO, putty: bool = False, tunnels: tuple[Tunnel, ...] = ()
) -> None:
    from qimg.launcher import sshconfig
    from qimg.launcher.backend import EXECUTING  # every instance answered: the task is executing

    forwards = tuple(option for tunnel in tunnels for option in tunnel.ssh_option)

    rows = [
        {
            "index": instance.index,
            "alias": (host := sshconfig.alias(record.name, instance.index)),
            "host": instance.host,
            "port": instance.port,
            "user": record.user,
            "ssh_command": sshconfig.printable(sshconfig.ssh_argv(host)),
            "host_key": instance.host_keys[0] if instance.host_keys else "",
            **(
                {"putty_command": sshconfig.printable(sshconfig.putty_argv(record, instance, forwards))}
                if putty
                else {}
            ),
        }
        for instance in record.instances
    ]
    if as_json:
        print(json.dumps({
            "task": {"id": record.task_id, "name": record.name}, "backend": record.backend,
            "state": EXECUTING, "instances": rows,
        }), flush=True)  # fmt: skip
        return
    print(f"ready: task {record.name} ({record.task_id}) on {record.backend}, host keys pinned", file=out)
    for row in rows:
        print(f"  {row['ssh_command']}", file=out, flush=True)
        if putty:
            print(f"  {row['putty_command']}", file=out, flush=True)


def _record_and_backend(name: str, local: bool) -> tuple[TaskRecord | None, Backend, str]:
    """The task's record (if this machine launched it), its backend, and its id."""
    from qimg.launcher import sshconfig
    from qimg.launcher.backend import find_task, open_backend

    sshconfig.check_task_name(name)
    record = sshconfig.load(name)
    backend = open_backend(record.backend if record else _backend_name(local))
    return record, backend, record.task_id if record else find_task(backend, name).id


def _login_record(name: str, local: bool) -> TaskRecord:
    from qimg.launcher import launch

    record, backend, _task_id = _record_and_backend(name, local)
    if record is None:
        raise UsageError(
            f"task {name} was not launched from this machine: no pinned host key or identity for it"
        )
    return launch.refresh(backend, record)


@app.command("ssh")
def ssh_command(
    name: Annotated[str, typer.Argument(help="Task name.")],
    command: Annotated[list[str] | None, typer.Argument(help="Command to run (after --).")] = None,
    local: LocalOpt = False,
    putty: PuttyOpt = False,
) -> None:
    """Log into a task's first instance, or run a command on every instance."""
    from qimg.launcher import launch, sshconfig

    record = _login_record(name, local)
    if putty:
        for instance in record.instances:
            print(sshconfig.printable([*sshconfig.putty_argv(record, instance), *(command or [])]))
        return
    # As ssh does: the words are joined with spaces and the remote shell parses them.
    code = launch.run_over_ssh(record, " ".join(command) if command else None, interactive=not command)
    raise typer.Exit(code)


@app.command()
def tunnel(
    name: Annotated[str, typer.Argument(help="Task name.")],
    ports: Annotated[str, typer.Argument(help="LOCAL[:REMOTE], e.g. 8888 or 8888:8888.")],
    local: LocalOpt = False,
) -> None:
    """Forward a local port to the task until Ctrl-C (fails loudly if the port cannot be bound)."""
    from qimg.launcher import launch

    forward = launch.parse_tunnel(ports)
    launch.check_port_free(forward)
    record = _login_record(name, local)
    _stderr().print(
        f"forwarding 127.0.0.1:{forward.local} -> {name}:{forward.remote}; Ctrl-C to close", markup=False
    )
    raise typer.Exit(launch.run_over_ssh(record, None, (forward,)))


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Task name.")],
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new output.")] = False,
    local: LocalOpt = False,
) -> None:
    """Print a task's output (stdout, then stderr)."""
    import time

    from qimg.launcher.backend import TaskNotFound

    _record, backend, task_id = _record_and_backend(name, local)
    try:
        while True:
            sys.stdout.write(backend.new_output(task_id))
            sys.stdout.flush()
            sys.stderr.write(backend.new_output(task_id, stderr=True))
            if not follow or backend.view(task_id).ended:
                return
            time.sleep(1)
    except (KeyboardInterrupt, TaskNotFound):  # Ctrl-C, or the task was stopped meanwhile
        return


@app.command()
def stop(
    name: Annotated[str | None, typer.Argument(help="Task name.")] = None,
    stop_all: Annotated[bool, typer.Option("--all", help="Stop every task qimg launched there.")] = False,
    local: LocalOpt = False,
) -> None:
    """Abort and delete a task (or all of them): nothing keeps running or billing."""
    from qimg.launcher import sshconfig
    from qimg.launcher.backend import open_backend

    if bool(name) == stop_all:
        raise UsageError("name one task, or pass --all: qimg stop NAME | qimg stop --all")
    if name:
        _record, backend, task_id = _record_and_backend(name, local)
        targets = [(name, task_id)]
    else:
        backend = open_backend(_backend_name(local))
        targets = [(task.name, task.id) for task in backend.tasks()]
    for task_name, task_id in targets:
        backend.stop(task_id)
        record = sshconfig.load(task_name)
        if record is not None and record.task_id == task_id:
            sshconfig.forget(task_name)
        print(f"stopped {task_name} ({task_id})")
    if not targets:
        print(f"no qimg task on {backend.name}")


@app.command("ls")
def list_tasks(local: LocalOpt = False, as_json: JsonOpt = False) -> None:
    """List the tasks launched by qimg: name, state, endpoints, age, credits."""
    from datetime import datetime, timezone

    from qimg.launcher.backend import open_backend

    backend = open_backend(_backend_name(local))
    now = datetime.now(timezone.utc)
    tasks = sorted(backend.tasks(), key=lambda task: task.created or now)
    if as_json:
        print(json.dumps({"backend": backend.name, "tasks": [task.as_dict(now) for task in tasks]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qimg tasks on {backend.name}", title_justify="left")
    for column in ("name", "state", "endpoints", "age", "credits"):
        table.add_column(column)
    for task in tasks:
        age = int((now - task.created).total_seconds()) if task.created else None
        table.add_row(
            task.name, task.state, " ".join(task.endpoints) or "-",
            "-" if age is None else f"{age // 3600}h{age % 3600 // 60:02d}m",
            "-" if task.credits is None else f"{task.credits:.2f} EUR",
        )  # fmt: skip
    Console(highlight=False).print(table)


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
    import getpass
    import socket

    from qimg.launcher import keygen as key_files
    from qimg.launcher.keys import read_key_file

    if from_ppk is not None:
        if bits is not None or key_type is not KeyType.ED25519:
            raise UsageError("--from converts an existing key: it goes with neither --type nor --bits")
        source = f"--from {from_ppk}"
        parsed = key_files.read_ppk(read_key_file(from_ppk, source), source)
        paths = key_files.targets(out or from_ppk.with_suffix(""), ppk, force)
        passphrase = _passphrase(passphrase_stdin, prompt="passphrase of the .ppk: ", ask=parsed.encrypted)
        key = key_files.from_ppk(parsed, source, passphrase)
        written = key_files.write(key, paths, comment if comment is not None else parsed.comment, passphrase)
    else:
        default_out = Path.home() / ".ssh" / f"id_{key_type.value}"
        paths = key_files.targets(out or default_out, ppk, force)
        key = key_files.generate(key_type.value, bits)
        passphrase = _passphrase(
            passphrase_stdin, prompt="passphrase (empty for none): ", ask=sys.stdin.isatty()
        )
        label = comment if comment is not None else f"{getpass.getuser()}@{socket.gethostname()}"
        written = key_files.write(key, paths, label, passphrase)
    if as_json:
        print(json.dumps(written.as_dict()))
        return
    for path in (written.private, written.public, written.ppk):
        if path is not None:
            print(f"wrote {path}")
    print(f"{written.fingerprint} {written.public_line}")


def _passphrase(from_stdin: bool, *, prompt: str, ask: bool) -> bytes | None:
    """From stdin (--passphrase-stdin), else asked on the terminal when `ask`; None when empty."""
    if from_stdin:
        text = _stdin_line()
    elif ask and sys.stdin.isatty():
        import getpass

        text = getpass.getpass(prompt)
    elif ask:
        raise UsageError("the key is encrypted and there is no terminal to ask: pass --passphrase-stdin")
    else:
        text = ""
    return text.encode() or None


@app.command("ssh-config")
def ssh_config(
    install: Annotated[
        bool, typer.Option("--install", help="Add one Include line for qimg's file to ~/.ssh/config.")
    ] = False,
) -> None:
    """Print where qimg's ssh config is; --install makes plain `ssh qimg-NAME` work."""
    from qimg.launcher import sshconfig

    if not install:
        print(sshconfig.config_path())
        return
    user_config = Path.home() / ".ssh" / "config"
    added = sshconfig.install_include(user_config)
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
