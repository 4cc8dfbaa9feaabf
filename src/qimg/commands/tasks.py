"""The day-to-day commands on launched tasks: `ssh`, `tunnel`, `logs`, `stop`, `ls`, `ssh-config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qimg import docker_context
from qimg.commands.common import TASKS, JsonOpt, LocalOpt, NameArg, PuttyOpt, app, backend_of
from qimg.display import data as data_display
from qimg.display import note, stderr
from qimg.display import tasks as display
from qimg.errors import UsageError


@app.command("ssh", rich_help_panel=TASKS)
def ssh_command(
    name: NameArg,
    command: Annotated[list[str] | None, typer.Argument(help="Command to run (after --).")] = None,
    local: LocalOpt = False,
    putty: PuttyOpt = False,
) -> None:
    """Log into a task's first instance, or run a command on every instance."""
    from qimg.launcher import session

    if putty:
        display.lines(session.putty_commands(name, backend_of(local), command))
        return
    raise typer.Exit(session.ssh(name, backend_of(local), command))


@app.command(rich_help_panel=TASKS)
def tunnel(
    name: NameArg,
    ports: Annotated[str, typer.Argument(help="LOCAL[:REMOTE], e.g. 8888 or 8888:8888.")],
    local: LocalOpt = False,
) -> None:
    """Forward a local port to the task until Ctrl-C (fails loudly if the port cannot be bound)."""
    from qimg.launcher import session
    from qimg.launcher.tunnels import parse_tunnel

    raise typer.Exit(session.tunnel(name, backend_of(local), parse_tunnel(ports), note))


@app.command(rich_help_panel=TASKS)
def logs(
    name: NameArg,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new output.")] = False,
    local: LocalOpt = False,
) -> None:
    """Print a task's output (stdout, then stderr)."""
    from qimg.launcher.logs import follow_output

    follow_output(name, backend_of(local), follow, display.output)


@app.command(rich_help_panel=TASKS)
def stop(
    name: Annotated[str | None, typer.Argument(help="Task name.")] = None,
    stop_all: Annotated[bool, typer.Option("--all", help="Stop every task qimg launched there.")] = False,
    local: LocalOpt = False,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the task's buckets (with --all: every qimg bucket).")
    ] = False,
) -> None:
    """Abort and delete a task (or all of them): nothing keeps running or billing. Its results, if it
    has a results bucket, are downloaded first."""
    from qimg.errors import BackendError, TaskNotFound
    from qimg.launcher import bucket_io, tasks
    from qimg.launcher.backends import registry
    from qimg.launcher.backends.base import STORAGE

    if bool(name) == stop_all:
        raise UsageError("name one task, or pass --all: qimg stop NAME | qimg stop --all")
    chosen = backend_of(local)
    if purge:
        registry.check(chosen, STORAGE, "--purge")
    missing: TaskNotFound | None = None
    opened = None
    with data_display.TransferBars(stderr()) as bars:
        try:
            opened, stopped = tasks.stop(name, chosen, bucket_io.results_first(bars.note, bars))
        except TaskNotFound as gone:
            if not purge:
                raise
            stopped, missing = [], gone  # buckets may be left
    engine = docker_context.resolve().described if local else None
    display.stopped(opened.name if opened else chosen, stopped, say_none=missing is None, engine=engine)
    if purge:
        deleted, kept, failures = bucket_io.purge(name, chosen, opened)
        display.buckets_deleted(deleted)
        if failures:
            raise BackendError(
                f"could not delete {len(failures)} bucket(s): {'; '.join(failures)} "
                "(`qimg stop --purge` tries again)"
            )
        if missing is not None and not (deleted or kept):
            raise missing


@app.command("ls", rich_help_panel=TASKS)
def list_tasks(
    local: LocalOpt = False,
    as_json: JsonOpt = False,
    show_buckets: Annotated[bool, typer.Option("--buckets", help="List qimg's buckets instead.")] = False,
) -> None:
    """List the tasks launched by qimg: name, state, endpoints, forwarded ports, age, credits, idle stop (or
    its buckets)."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    if show_buckets:
        from qimg.launcher import bucket_io

        chosen = backend_of(local)
        data_display.buckets(chosen, bucket_io.list_buckets(chosen), now, as_json)
        return
    from qimg.launcher import tasks

    listing = tasks.list_tasks(backend_of(local))
    display.task_list(listing, now, as_json, docker_context.resolve().described if local else None)


@app.command("ssh-config", rich_help_panel=TASKS)
def ssh_config(
    install: Annotated[
        bool, typer.Option("--install", help="Add one Include line for qimg's file to ~/.ssh/config.")
    ] = False,
) -> None:
    """Print where qimg's ssh config is; --install makes plain `ssh qimg-NAME` work."""
    from qimg.launcher import sshconfig

    sshconfig.write_files()  # rewritten from the records: a file moved or damaged is made again
    if not install:
        display.lines([str(sshconfig.config_path())])
        return
    user_config = Path.home() / ".ssh" / "config"
    added = sshconfig.install_include(user_config)
    display.include_installed(added, sshconfig.config_path(), user_config)
