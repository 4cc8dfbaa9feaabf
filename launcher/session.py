"""A launch from start to end, and the user's ssh sessions on tasks.

`run_task` is the whole lifecycle of `qimg run`: submit, wait until ready, hand the record to the
caller, then the session asked for (a command, an interactive shell, tunnels), and the rule that no
task keeps running that nobody asked for: on every way out of a failure, and after a command or an
interactive session, the task is stopped unless the plan says keep.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from qimg.errors import Interrupted, QimgError
from qimg.launcher import launch, records, signals, sshconfig, tasks
from qimg.launcher.backends.base import TaskView
from qimg.launcher.plan import LaunchPlan
from qimg.launcher.records import TaskRecord
from qimg.launcher.tunnels import Tunnel, check_port_free


class Reporter(Protocol):
    """What the caller shows of a launch: progress, notes for the user, and the ready task."""

    def status(self, view: TaskView, elapsed: float) -> None: ...

    def note(self, line: str) -> None: ...

    def ready(self, record: TaskRecord) -> None: ...


def run_task(plan: LaunchPlan, reporter: Reporter) -> int:
    """Launch the plan's task and use it as asked. Returns the exit code: the command's, ssh's, or 0.

    The record is written before the request that creates the task, and signals are held while the
    request runs: whatever happens, the launch's tasks are known (by id, else by the launch's tag)
    and stopped on the way out of a failure.
    """
    backend, request, key = plan.backend, plan.request, plan.login.key
    pending = TaskRecord(
        request.name, backend.name, "", plan.login.user, key.identity, key.ppk, [], request.launch_id
    )
    with records.launching(request.name):
        tasks.claim_name(pending, backend)
        task_id = ""
        with signals.as_errors():
            try:
                with signals.deferred():
                    task_id = backend.submit(request)
                    records.store(replace(pending, task_id=task_id))
                record = _ready(plan, task_id, reporter)
            except BaseException as failure:
                for line in getattr(failure, "details", ()):
                    reporter.note(f"  {line}")
                _end(plan, task_id, reporter)
                raise
        if not (plan.connect or plan.command is not None or plan.tunnels):
            stop_hint = f"qimg stop {request.name}" + (" --local" if backend.name == "local" else "")
            reporter.note(f"the task keeps running (and billing) until: {stop_hint}")
            return 0
        if not (plan.connect or plan.command is not None):  # tunnels only: held until Ctrl-C; the task stays
            return run_over_ssh(record, None, plan.tunnels)
        try:
            with signals.as_errors():
                return run_over_ssh(record, plan.command, plan.tunnels, interactive=plan.connect)
        finally:
            _end(plan, task_id, reporter)


def _ready(plan: LaunchPlan, task_id: str, reporter: Reporter) -> TaskRecord:
    """Wait for every instance, record the pins, and show the caller how to log in."""
    instances = launch.wait_ready(
        plan.backend, task_id, plan.login.user, plan.login.key.identity,
        time.monotonic() + plan.timeout, reporter.status, plan.request.entries,
    )  # fmt: skip
    key = plan.login.key
    record = TaskRecord(
        plan.request.name, plan.backend.name, task_id, plan.login.user, key.identity, key.ppk, instances,
        plan.request.launch_id,
    )  # fmt: skip
    sshconfig.save(record)
    reporter.ready(record)
    return record


def _end(plan: LaunchPlan, task_id: str, reporter: Reporter) -> None:
    """The way out of a launch: stop its tasks and drop its record, unless the plan keeps them. A record
    whose tasks could not all be stopped stays, so that `qimg stop NAME` finds them later."""
    name = plan.request.name
    if plan.keep:
        reporter.note(f"task {task_id or '(being created)'} kept (--keep): stop it with `qimg stop {name}`")
        return
    lines = launch.stop_launch(plan.backend, task_id, plan.request.launch_id)
    for line in lines:
        reporter.note(line)
    if all(line.endswith("stopped and deleted") for line in lines):
        with contextlib.suppress(QimgError, OSError):  # a record that cannot be dropped is only stale
            sshconfig.forget(name)


def remote_command(command: str) -> str:
    """What ssh sends for --command: a login shell, so /etc/profile.d (the task's environment) is read."""
    return "sh -lc " + shlex.quote(command)


def run_over_ssh(
    record: TaskRecord,
    command: str | None,
    tunnels: tuple[Tunnel, ...] = (),
    *,
    interactive: bool = False,
) -> int:
    """An interactive session on the first instance, or the tunnels alone until Ctrl-C, or the command
    on every instance at once (tunnels on the first). Returns the first non-zero exit code, else 0.
    ssh never outlives qimg: SIGTERM or SIGHUP ends it too (and raises Interrupted)."""
    hosts = [sshconfig.alias(record.name, instance.index) for instance in record.instances]
    forwards = [option for tunnel in tunnels for option in tunnel.ssh_option]
    if forwards:
        forwards += ["-o", "ExitOnForwardFailure=yes"]
    if interactive:  # Ctrl-C belongs to the remote shell
        with signals.as_errors(interrupt=False):
            return _children([sshconfig.config_argv(hosts[0], options=tuple(forwards))], terminal=True)
    if command is None:  # tunnels alone: Ctrl-C closes them, and the task keeps running
        try:
            with signals.as_errors():
                return _children([sshconfig.config_argv(hosts[0], options=(*forwards, "-N"))])
        except Interrupted as interruption:
            if interruption.exit_code == 128 + signal.SIGINT:
                return 0
            raise
    options = [tuple(forwards)] + [()] * (len(hosts) - 1)  # the tunnels go through the first instance
    return _children([
        sshconfig.config_argv(host, remote_command(command), options=host_options)
        for host, host_options in zip(hosts, options, strict=True)
    ])  # fmt: skip


def _children(commands: list[list[str]], *, terminal: bool = False) -> int:
    """Run the commands at once and wait for all; whatever ends the wait ends them too. Returns the
    first non-zero exit code, in the commands' order, else 0."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for argv in commands:
            processes.append(subprocess.Popen(argv, stdin=None if terminal else subprocess.DEVNULL))
        codes = [process.wait() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return next((code for code in codes if code), 0)


def ssh(name: str, local: bool, command: list[str] | None) -> int:
    """`qimg ssh NAME [-- CMD]`: a shell on the first instance, or the command on every instance."""
    record, _backend = tasks.login_record(name, local)
    # As ssh does: the words are joined with spaces and the remote shell parses them.
    return run_over_ssh(record, " ".join(command) if command else None, interactive=not command)


def putty_commands(name: str, local: bool, command: list[str] | None) -> list[str]:
    """`qimg ssh NAME --putty`: the plink command of each instance, printable."""
    record, _backend = tasks.login_record(name, local)
    return [
        sshconfig.printable([*sshconfig.putty_argv(record, instance), *(command or [])])
        for instance in record.instances
    ]


def tunnel(name: str, local: bool, forward: Tunnel, on_open: Callable[[str], None]) -> int:
    """`qimg tunnel NAME PORTS`: the forward, held until Ctrl-C (it fails loudly if it cannot bind)."""
    check_port_free(forward)
    record, _backend = tasks.login_record(name, local)
    on_open(f"forwarding 127.0.0.1:{forward.local} -> {name}:{forward.remote}; Ctrl-C to close")
    return run_over_ssh(record, None, (forward,))
