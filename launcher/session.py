"""A launch from start to end, and the user's ssh sessions on tasks.

`run_task` is the whole lifecycle of `qimg run`: submit, wait until ready, hand the record to the
caller, then the session asked for (a command, an interactive shell, tunnels), and the rule that no
task keeps running that nobody asked for: on every way out of a failure, and after a command or an
interactive session, the task is stopped unless the plan says keep.
"""

from __future__ import annotations

import functools
import shlex
import signal
import sys
from collections.abc import Callable
from typing import Protocol

from qimg import notices
from qimg.errors import CreatedButFailed, CreationUnresolved, Interrupted, QimgError, ResultsUploading
from qimg.launcher import (
    attach,
    bucket_io,
    kept_logins,
    launch,
    names,
    processes,
    reconnect,
    records,
    signals,
    sshconfig,
)
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import Backend, TaskView
from qimg.launcher.plan import LaunchPlan
from qimg.launcher.records import TaskRecord
from qimg.launcher.tunnels import Tunnel, check_port_free


class Reporter(Protocol):
    """What the caller shows of a launch: progress, notes for the user, and the ready task."""

    def status(self, view: TaskView, elapsed: float) -> None: ...

    def note(self, line: str) -> None: ...

    def ready(self, record: TaskRecord) -> None: ...


# A session of the caller's own on the ready task (`qimg jupyter`): given the record and the ssh options
# of the kept login, it returns the exit code.
Session = Callable[[TaskRecord, tuple[str, ...]], int]


def run_task(
    plan: LaunchPlan,
    reporter: Reporter,
    transfers: bucket_io.Progress | None = None,
    session: Session | None = None,
) -> int:
    """Launch the plan's task and use it as asked (`session`, if given, in place of a command or a
    shell). Returns the exit code: the command's, ssh's, the session's, or 0.

    The record is written before the request that creates the task, and signals are held while the
    request runs: whatever happens, the launch's tasks are known (by id, else by the launch's tag)
    and stopped on the way out of a failure.
    """
    backend, request = plan.backend, plan.request
    session_follows = plan.connect or plan.command is not None or session is not None
    with records.launching(request.name), kept_logins.kept(session_follows) as kept:
        names.claim_name(plan.record(), backend)
        task_id = ""
        with signals.as_errors():
            try:
                if plan.data is not None:  # its buckets, before the task that reads them
                    bucket_io.stage(backend, plan.data, request.name, reporter.note, transfers)
                with signals.deferred():
                    try:
                        task_id = backend.submit(request)
                    except CreatedButFailed as failure:  # it exists: recorded, then stopped below
                        task_id = failure.task_id
                        records.store(plan.record(task_id=task_id))
                        raise
                    records.store(plan.record(task_id=task_id))
                if plan.batch:
                    ended = _run_batch(plan, task_id, reporter)
                else:
                    record = _ready(
                        plan, task_id, reporter,
                        kept_logins.readiness_options(kept, loopback=backend.name == registry.LOCAL),
                    )  # fmt: skip
            except BaseException as failure:  # its details are shown with it, by the entry point
                _end(plan, task_id, reporter, transfers, unresolved=isinstance(failure, CreationUnresolved))
                raise
        if plan.batch:  # over: ended here, where a failure of the ending is not ended again above
            _end(plan, task_id, reporter, transfers)
            if ended.state == "Success":
                return 0
            reporter.note(
                f"task {request.name} ended {ended.state}" + "".join(f"; {e}" for e in ended.errors)
            )
            return 1
        if not (session_follows or plan.tunnels):
            chosen_by = registry.registration(backend.name).option  # --local
            stop_hint = f"qimg stop {request.name}" + (f" {chosen_by}" if chosen_by else "")
            reporter.note(f"the task keeps running (and billing) until: {stop_hint}")
            return 0
        if not session_follows:  # tunnels only: held until Ctrl-C; the task stays
            return run_over_ssh(record, None, plan.tunnels, backend=backend, note=reporter.note)
        try:
            with signals.as_errors():
                if session is not None:
                    return session(record, kept_logins.client_options(kept))
                return run_over_ssh(
                    record,
                    plan.command,
                    plan.tunnels,
                    backend=backend,
                    interactive=plan.connect,
                    ssh_options=kept_logins.client_options(kept),
                )
        finally:
            _end(plan, task_id, reporter, transfers)


def _run_batch(plan: LaunchPlan, task_id: str, reporter: Reporter) -> TaskView:
    """A batch task (its command is the task): wait for its end and print each instance's output
    (qimg's own lines left out). Its view once over; the caller ends the launch (0 on Success)."""
    view = launch.wait_end(plan.backend, task_id, plan.wait, reporter.status)
    for index in range(view.instance_count):
        for stderr, stream in ((False, sys.stdout), (True, sys.stderr)):
            stream.write(batch_output(plan.backend.output(task_id, index, stderr=stderr)))
    sys.stdout.flush()
    return view


def batch_output(text: str) -> str:
    """A batch task's output without the start script's own lines (host keys, what it starts)."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(("qimg-host-key: ", "qimg-start: ")))


def _ready(plan: LaunchPlan, task_id: str, reporter: Reporter, ssh_options: tuple[str, ...]) -> TaskRecord:
    """Wait for every instance, record the pins, and show the caller how to log in."""
    instances = launch.wait_ready(plan.backend, task_id, plan.wait, reporter.status, ssh_options)
    record = plan.record(task_id=task_id, instances=instances)
    sshconfig.save(record)
    reporter.ready(record)
    return record


def _end(
    plan: LaunchPlan,
    task_id: str,
    reporter: Reporter,
    transfers: bucket_io.Progress | None = None,
    *,
    unresolved: bool = False,
) -> None:
    """The way out of a launch: stop its tasks and drop its record, unless the plan keeps them. A record
    whose tasks could not all be stopped stays, so that `qimg stop NAME` finds them later, and so does
    the record of an `unresolved` creation (a task may still be listed under the launch's tag).
    Results come down before the task is deleted; the buckets of a launch whose task id never came
    back are deleted only once its tasks are known stopped."""
    name = plan.request.name
    if plan.keep:
        reporter.note(f"task {task_id or '(being created)'} kept (--keep): stop it with `qimg stop {name}`")
        return
    interrupted: Interrupted | None = None  # during the results: raised once the task is stopped
    if plan.data is not None and task_id:
        try:
            bucket_io.end_of_launch(plan.backend, plan.data, name, task_id, reporter.note, transfers)
        except ResultsUploading as error:  # its record stays: `qimg stop NAME` deletes it later
            reporter.note(f"task {task_id} not deleted: {error}; `qimg stop {name}` deletes it once done")
            if error.interrupted is not None:
                raise error.interrupted from None
            return
        except Interrupted as signal_:
            interrupted = signal_
    lines = launch.stop_launch(plan.backend, task_id, plan.request.launch_id)
    for line in lines:
        reporter.note(line)
    stopped = not unresolved and all(line.endswith("stopped and deleted") for line in lines)
    if plan.data is not None and not task_id:
        if stopped:  # no task of the launch is left to read them
            bucket_io.end_of_launch(plan.backend, plan.data, name, "", reporter.note, transfers)
        else:
            buckets = " and ".join(plan.data.buckets)
            reporter.note(
                f"buckets {buckets} kept: a task of this launch may use them (`qimg stop --purge {name}`)"
            )
    if unresolved:
        reporter.note(
            f"a task of this launch may still appear on Qarnot: `qimg stop {name}` (in a minute) stops it"
        )
    if stopped:
        try:
            sshconfig.forget(name)
        except QimgError as error:  # a record of a task that is over is only stale: said, not fatal
            notices.warn(f"could not forget {name}: {error}")
    if interrupted is not None:
        raise interrupted


def remote_command(command: str) -> str:
    """What ssh sends for --command: a login shell, so /etc/profile.d (the task's environment) is read."""
    return "sh -lc -- " + shlex.quote(command)  # --: a command starting with "-" is no option of sh


def run_over_ssh(
    record: TaskRecord,
    command: str | None,
    tunnels: tuple[Tunnel, ...] = (),
    *,
    backend: Backend,
    interactive: bool = False,
    note: Callable[[str], None] | None = None,
    ssh_options: tuple[str, ...] = (),
) -> int:
    """An interactive session on the first instance, or the tunnels alone until Ctrl-C (connecting
    again when the link drops, with a `note` each time: `reconnect.hold`), or the command on every
    instance at once (tunnels on the first), each ssh with `ssh_options`. Returns the first non-zero
    exit code, else 0. Notes go to stderr unless `note` says otherwise. ssh never outlives qimg:
    SIGTERM or SIGHUP ends it too (and raises Interrupted). `backend` is the task's, opened: the tunnels
    alone ask it whether the task lives when their link drops."""
    hosts = [sshconfig.alias(record.name, instance.index) for instance in record.instances]
    first = [*ssh_options, *(option for tunnel in tunnels for option in tunnel.ssh_option)]  # the tunnels
    if tunnels:
        first += ["-o", "ExitOnForwardFailure=yes"]
    if interactive:  # Ctrl-C belongs to the remote shell
        if record.attach_hook:
            attach.announce(hosts[0], ssh_options)
        with signals.as_errors(interrupt=False):
            return processes.children([sshconfig.config_argv(hosts[0], options=tuple(first))], terminal=True)
    if command is None:  # tunnels alone: Ctrl-C closes them, and the task keeps running
        argv = sshconfig.config_argv(hosts[0], options=(*processes.OWN_LINK, *first, "-N"))
        try:
            with signals.as_errors():
                return reconnect.hold(
                    backend, record, tunnels, functools.partial(_link, argv), note or notices.warn
                )
        except Interrupted as interruption:
            if interruption.exit_code == 128 + signal.SIGINT:
                return 0
            raise
    options = [tuple(first)] + [ssh_options] * (len(hosts) - 1)
    return processes.children([
        sshconfig.config_argv(host, remote_command(command), options=host_options)
        for host, host_options in zip(hosts, options, strict=True)
    ])  # fmt: skip


def _link(argv: list[str], on_up: Callable[[], None]) -> reconnect.Link:
    return reconnect.Link(*processes.until_down(argv, on_up))


def ssh(name: str, backend: str, command: list[str] | None) -> int:
    """`qimg ssh NAME [-- CMD]`: a shell on the first instance, or the command on every instance."""
    target = names.login(name, backend)
    # As ssh does: the words are joined with spaces and the remote shell parses them.
    return run_over_ssh(
        target.record, " ".join(command) if command else None, backend=target.backend, interactive=not command
    )


def putty_commands(name: str, backend: str, command: list[str] | None) -> list[str]:
    """`qimg ssh NAME --putty`: the plink command of each instance, printable."""
    record = names.login(name, backend).record
    return [
        sshconfig.printable([*sshconfig.putty_argv(record, instance), *(command or [])])
        for instance in record.instances
    ]


def tunnel(name: str, backend: str, forward: Tunnel, note: Callable[[str], None]) -> int:
    """`qimg tunnel NAME PORTS`: the forward, held until Ctrl-C (it fails loudly if it cannot bind),
    across dropped links while the task lives (one connection to its backend); `note` gets what the
    user should know."""
    check_port_free(forward)
    target = names.login(name, backend)
    note(f"forwarding 127.0.0.1:{forward.local} -> {name}:{forward.remote}; Ctrl-C to close")
    return run_over_ssh(target.record, None, (forward,), backend=target.backend, note=note)
