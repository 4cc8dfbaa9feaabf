"""`run`: launch a task, wait until it answers over ssh, and use it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qimg.commands.common import (
    TASKS,
    JsonOpt,
    LocalOpt,
    PasswordStdinOpt,
    PuttyOpt,
    UsernameOpt,
    app,
    registry_auth,
    typed_path,
)  # fmt: skip
from qimg.display import stderr
from qimg.display import tasks as display
from qimg.errors import UsageError

UploadOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--upload", help="Directory the task finds in /job/<its name> (repeatable).", parser=typed_path
    ),
]


@app.command(rich_help_panel=TASKS)
def run(
    image: Annotated[
        str | None,
        typer.Argument(help="Image to run (default: the last pushed, or with --local the last built)."),
    ] = None,
    ssh: Annotated[bool, typer.Option("--ssh", help="Wait until sshd accepts a login (the default).")] = True,
    local: LocalOpt = False,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinOpt = False,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key", help="Public key (default ~/.ssh/id_ed25519.pub or id_rsa.pub).", parser=typed_path
        ),
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
    idle_stop: Annotated[
        str | None,
        typer.Option("--idle-stop", help="Stop the task after this long without an ssh session: 30m, 2h."),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Never stop the task, even on failure.")] = False,
    upload: UploadOpt = None,
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="New or empty directory: the task's /job comes down there when it ends.",
            parser=typed_path,
        ),
    ] = None,
    snapshot_every: Annotated[
        str | None, typer.Option("--snapshot-every", help="Upload /job to the results this often: 30m, 2h.")
    ] = None,
    putty: PuttyOpt = False,
    as_json: JsonOpt = False,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="KEY=VALUE for the task and its ssh sessions (repeatable)."),
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="NAME of a variable of qimg's environment: sent write-only, seen only by the login user "
            "as $NAME (repeatable).",
        ),
    ] = None,
    cores: Annotated[
        int | None, typer.Option("--cores", help="N cores per instance, as `qimg hardware` offers them.")
    ] = None,
    ram: Annotated[
        float | None,
        typer.Option(
            "--ram", help="GB (decimal: 32 is 32000 MB) per instance, as `qimg hardware` offers them."
        ),
    ] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="A machine with a GPU.")] = False,
    ssd: Annotated[bool, typer.Option("--ssd", help="A machine with an SSD.")] = False,
    hardware: Annotated[
        list[str] | None,
        typer.Option("--hardware", help="Specific hardware by key (repeatable): `qimg hardware`."),
    ] = None,
    scheduling: Annotated[
        str,
        typer.Option(
            "--scheduling", help="flex (may be preempted), on-demand or reserved (with --reservation)."
        ),
    ] = "flex",
    reservation: Annotated[
        str | None,
        typer.Option("--reservation", help="With --scheduling reserved: the reservation (`qimg account`)."),
    ] = None,
    max_queue: Annotated[
        str | None, typer.Option("--max-queue", help="Give up when queued longer: 600, 30m, 2h.")
    ] = None,
) -> None:
    """Launch an ssh-ready task, wait for a login with its host key pinned, print how to log in."""
    from qimg.launcher import sshconfig
    from qimg.launcher.plan import LaunchOptions, plan_launch
    from qimg.launcher.records import TaskRecord
    from qimg.launcher.session import run_task
    from qimg.launcher.tunnels import parse_tunnels
    from qimg.launcher.worker import WorkerOptions, cluster_note

    del ssh  # the only mode: there is no launch without readiness
    if connect and as_json:
        raise UsageError("--connect opens a terminal session: it does not go with --json")
    options = LaunchOptions(
        image=image, local=local, key=key, user=user, instances=instances, name=name, profile=profile,
        tunnels=tuple(tunnel or ()), connect=connect, command=command, timeout=timeout, max_time=max_time,
        idle_stop=idle_stop, keep=keep, registry_auth=registry_auth(username, password_stdin),
        uploads=tuple(upload or ()), results=results, snapshot_every=snapshot_every,
        worker=WorkerOptions(
            env=tuple(env or ()), secrets=tuple(secret or ()), cores=cores, ram_gb=ram, gpu=gpu, ssd=ssd,
            hardware=tuple(hardware or ()), scheduling=scheduling, reservation=reservation,
            max_queue=max_queue,
        ),
    )  # fmt: skip
    # stdout belongs to --command's output: then the ready lines go to stderr.
    out = sys.stderr if command is not None else sys.stdout
    forwards = tuple(option for tunnel in parse_tunnels(options.tunnels) for option in tunnel.ssh_option)

    def ready(record: TaskRecord) -> None:
        display.ready(record, sshconfig.logins(record, putty, forwards), as_json, out)

    with display.RunReporter(stderr(), ready) as reporter:
        plan = plan_launch(options)
        for note in (*plan.notes, cluster_note(plan.request)):
            if note:
                reporter.note(note)
        code = run_task(plan, reporter, reporter.transfer)
    raise typer.Exit(code)
