"""The lifecycle rules of `qimg run` (`session.run_task`) on the memory backend (tests/backends/memory.py),
registered by name as the real backends are: whatever fails, at whichever step (the name claimed, the
data staged, the creation, the wait for ready, the readiness logins, the deadline, the results, a
signal at any of them), no task of the launch is left and its record is gone, unless --keep says
keep, a creation's outcome is unknown (the record stays, so that `qimg stop NAME` finds what may
appear), or a task could not be stopped (the record stays, and `qimg stop NAME` stops it later).

The readiness logins are real: OpenSSH's client against what listens at the forward. No sshd runs on
this machine's host (the e2e suite logs into real ones, in containers), so the logins here fail, as
they must when nothing or something else than sshd answers; the success path to the end of a launch
is a batch run (its command is the task), which needs no login.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qimg.errors import (
    BackendError,
    CreatedButFailed,
    CreationUnresolved,
    FileError,
    Interrupted,
    LaunchFailed,
    UsageError,
)
from qimg.launcher import data, records, session, tasks
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import HARDWARE, STORAGE, TaskRequest
from qimg.launcher.keys.read import read_login_key
from qimg.launcher.launch import Readiness
from qimg.launcher.plan import LaunchPlan, Login
from qimg.launcher.records import TaskRecord
from tests.backends import memory as memory_backend
from tests.backends.memory import Service
from tests.helpers import Recorder

NAME = "t1"


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture
def login_key(tmp_path: Path) -> Path:
    """The user's key pair (its public half, as --key takes it)."""
    return keygen(tmp_path / "id_ed25519").with_suffix(".pub")


@pytest.fixture
def host_key(tmp_path: Path) -> str:
    """A host key the instances print, as qimg's start script prints sshd's."""
    public = keygen(tmp_path / "host_ed25519").with_suffix(".pub").read_text()
    return " ".join(public.split()[:2])


def launch_plan(
    key: Path,
    *,
    timeout: float = 1.0,
    keep: bool = False,
    command: str | None = None,
    batch: bool = False,
    data_plan: data.DataPlan | None = None,
    max_queue: int | None = None,
) -> LaunchPlan:
    """The one place these tests describe a run (`plan.plan_launch` would need an image in an engine):
    a launch of NAME on the memory backend, opened by its registered name."""
    launch_id = secrets.token_hex(8)
    request = TaskRequest(
        NAME, "registry.example/app:1", "docker-batch" if batch else "docker-network-ssh", 1,
        {"DOCKER_REPO": "registry.example/app", "DOCKER_TAG": "1"}, launch_id, max_queue_seconds=max_queue,
    )  # fmt: skip
    if data_plan is not None:
        request = data_plan.applied(request)
    login = Login("alice", read_login_key(key))
    wait = Readiness(
        user=login.user, identity=login.key.identity, timeout=timeout,
        queue_timeout=request.max_queue_seconds, entries=request.entries, instances=request.instances,
    )  # fmt: skip
    return LaunchPlan(
        backend=registry.open_backend("memory"), request=request, login=login, wait=wait, keep=keep,
        tunnels=(), command=command, connect=False, data=data_plan, batch=batch,
    )  # fmt: skip


def run(plan: LaunchPlan) -> tuple[Recorder, BaseException | int]:
    """The launch, as `qimg run` makes it: what it showed, and its exit code or its error."""
    shown = Recorder()
    try:
        return shown, session.run_task(plan, shown)
    except (Exception, KeyboardInterrupt) as error:  # the error is the outcome tested
        return shown, error


def assert_nothing_left(service: Service) -> None:
    """No task of the launch exists, and qimg remembers none: a failure cost nothing afterwards."""
    assert service.tasks == {}
    assert records.load(NAME) is None
    assert not (records.records_dir() / f"{NAME}.json").exists()


def free_port() -> int:
    """A port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def not_sshd() -> Iterator[int]:
    """A server that sends an ssh banner and then closes: what a port forwarded to something else, or an
    sshd dying at its start, looks like to the banner check."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 not-really\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        done.set()
        thread.join()
        server.close()


# --- the backend, registered ----------------------------------------------------------------------


def test_the_memory_backend_is_registered_by_name_and_says_what_it_can_do(memory: Service) -> None:
    assert registry.can("memory", STORAGE) and not registry.can("memory", HARDWARE)
    with pytest.raises(UsageError) as refused:
        registry.check("memory", HARDWARE, "--gpu")
    assert str(refused.value) == (
        "--gpu is for Qarnot (a choice of machines): the memory backend has none (drop --memory)"
    )
    # Its records are records like the others': written, read back, found by name.
    record = TaskRecord(NAME, "memory", "id-1", "alice", Path("/keys/id_ed25519"), None, [], "0123abcd")
    records.store(record)
    assert records.load(NAME) == record


# --- before the task exists -----------------------------------------------------------------------


def test_a_name_held_by_a_running_task_creates_nothing(memory: Service, login_key: Path) -> None:
    plan = launch_plan(login_key)
    running = plan.backend.submit(plan.request)
    plan.backend.view(running)
    held = TaskRecord(
        NAME, "memory", running, "alice", read_login_key(login_key).identity, launch_id="0" * 16
    )
    records.store(held)
    _shown, outcome = run(launch_plan(login_key))
    assert isinstance(outcome, UsageError) and "a task of that name is running" in str(outcome)
    assert list(memory.tasks) == [running] and memory.counts["submit"] == 1  # nothing submitted
    assert records.load(NAME) == held


def test_a_name_that_cannot_be_claimed_creates_nothing(
    memory: Service, login_key: Path, tmp_path: Path
) -> None:
    (tmp_path / "qimg").mkdir(parents=True)
    (tmp_path / "qimg" / "tasks").write_text("not a folder")
    _, outcome = run(launch_plan(login_key))
    assert isinstance(outcome, FileError)
    assert "submit" not in memory.counts and memory.tasks == {}


def test_a_failure_while_staging_the_data_deletes_its_buckets(
    memory: Service, login_key: Path, tmp_path: Path
) -> None:
    memory.fail_at["upload"] = {2}
    _shown, outcome = run(launch_plan(login_key, data_plan=data_planned(tmp_path, results=True)))
    assert isinstance(outcome, BackendError) and "upload #2" in str(outcome)
    assert "submit" not in memory.counts
    assert memory.buckets == {} and data.load(NAME) is None
    assert_nothing_left(memory)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_a_signal_while_staging_the_data_deletes_its_buckets(
    memory: Service, login_key: Path, tmp_path: Path, signum: int
) -> None:
    memory.signal_at["upload"] = (1, signum)
    _shown, outcome = run(launch_plan(login_key, data_plan=data_planned(tmp_path, results=True)))
    assert isinstance(outcome, Interrupted) and outcome.exit_code == 128 + signum
    assert "submit" not in memory.counts
    assert memory.buckets == {} and data.load(NAME) is None
    assert_nothing_left(memory)


def data_planned(tmp_path: Path, *, results: bool) -> data.DataPlan:
    source = tmp_path / "inputs"
    source.mkdir()
    for name in ("a.txt", "b.txt"):
        (source / name).write_text(name)
    checked = data.check_options((source,), tmp_path / "results" if results else None, 0, "memory")
    assert checked is not None
    return checked.planned(NAME, "0123abcd0123abcd")


# --- the creation ---------------------------------------------------------------------------------


def test_a_refused_creation_leaves_nothing(memory: Service, login_key: Path) -> None:
    memory.creation = memory_backend.REFUSED
    _shown, outcome = run(launch_plan(login_key))
    assert isinstance(outcome, BackendError) and "429" in str(outcome)
    assert_nothing_left(memory)


def test_a_task_created_then_failing_is_stopped(memory: Service, login_key: Path) -> None:
    memory.creation = memory_backend.CREATED_BUT_FAILED
    shown, outcome = run(launch_plan(login_key))
    assert isinstance(outcome, CreatedButFailed)
    assert ("stop", outcome.task_id) in memory.calls
    assert f"task {outcome.task_id} stopped and deleted" in shown.notes
    assert_nothing_left(memory)


@pytest.mark.parametrize("made", [0, 2])
def test_an_unclear_creation_stops_what_its_tag_finds_and_keeps_its_record(
    memory: Service, login_key: Path, made: int
) -> None:
    memory.creation = memory_backend.UNCLEAR if made else memory_backend.UNCLEAR_NOTHING
    memory.copies = made or 1
    plan = launch_plan(login_key)
    shown, outcome = run(plan)
    assert isinstance(outcome, CreationUnresolved)
    assert memory.tasks == {}  # both copies found by the launch's tag, and stopped
    assert sum(1 for line in shown.notes if line.endswith("stopped and deleted")) == made
    # A task of the launch may still appear: the record stays, with the launch's tag to find it.
    record = records.load(NAME)
    assert record is not None and record.task_id == "" and record.launch_id == plan.request.launch_id
    assert any(f"`qimg stop {NAME}` (in a minute)" in line for line in shown.notes)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_creation_is_held_until_the_task_is_known(
    memory: Service, login_key: Path, signum: int
) -> None:
    memory.signal_at["submit"] = (1, signum)
    _shown, outcome = run(launch_plan(login_key))
    assert isinstance(outcome, Interrupted) and outcome.exit_code == 128 + signum
    assert [call for call, _ in memory.calls].count("stop") == 1  # created, then stopped by its id
    assert "view" not in memory.counts
    assert_nothing_left(memory)


# --- the wait for ready ---------------------------------------------------------------------------


def test_a_task_that_fails_before_ready_is_stopped_with_what_it_printed(
    memory: Service, login_key: Path
) -> None:
    memory.fails_at_look, memory.stderr = 3, "qimg-start: sshd: no hostkeys available -- exiting."
    shown, outcome = run(launch_plan(login_key, timeout=30))
    assert isinstance(outcome, LaunchFailed) and str(outcome) == "task failure before ssh was ready"
    assert outcome.details == (
        "task error: instance 0 exited with code 1",
        "output: 0> qimg-start: sshd: no hostkeys available -- exiting.",
    )  # shown with the error, by the entry point
    assert shown.states[-1] == "Failure"
    assert_nothing_left(memory)


def test_a_failed_task_whose_output_cannot_be_read_is_stopped_all_the_same(
    memory: Service, login_key: Path
) -> None:
    memory.fails_at_look, memory.fail_at["output"] = 2, {1, 2}
    _shown, outcome = run(launch_plan(login_key, timeout=30))
    assert isinstance(outcome, LaunchFailed) and str(outcome) == "task failure before ssh was ready"
    assert outcome.details == ("task error: instance 0 exited with code 1",)
    assert_nothing_left(memory)


def test_a_task_that_never_leaves_the_queue_is_stopped_at_max_queue(memory: Service, login_key: Path) -> None:
    memory.queued_looks = None
    _shown, outcome = run(launch_plan(login_key, timeout=30, max_queue=1))
    assert isinstance(outcome, LaunchFailed) and str(outcome) == "still queued after 1 s (Submitted)"
    assert_nothing_left(memory)


def test_a_look_that_fails_ends_the_launch_and_the_task_is_stopped(memory: Service, login_key: Path) -> None:
    memory.fail_at["view"] = {2}
    _shown, outcome = run(launch_plan(login_key, timeout=30))
    assert isinstance(outcome, BackendError) and str(outcome) == "the memory service failed view #2"
    assert_nothing_left(memory)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_wait_stops_the_task(memory: Service, login_key: Path, signum: int) -> None:
    memory.signal_at["view"] = (3, signum)
    _shown, outcome = run(launch_plan(login_key, timeout=30))
    assert isinstance(outcome, Interrupted) and outcome.exit_code == 128 + signum
    assert_nothing_left(memory)


# --- the readiness logins and the deadline --------------------------------------------------------


def test_a_task_without_a_forward_is_stopped_at_the_deadline(memory: Service, login_key: Path) -> None:
    memory.forward_port = None
    _shown, outcome = run(launch_plan(login_key, timeout=0.5))
    assert isinstance(outcome, LaunchFailed)
    assert str(outcome).startswith(
        "not ready within 0.5 s of leaving the queue (FullyExecuting, 0/1 instances"
    )
    assert_nothing_left(memory)


def test_a_forward_where_nothing_answers_is_never_ready(
    memory: Service, login_key: Path, host_key: str
) -> None:
    memory.forward_port, memory.host_keys = free_port(), (host_key,)
    _shown, outcome = run(launch_plan(login_key, timeout=1))
    assert isinstance(outcome, LaunchFailed) and str(outcome).endswith("instance 0: nothing answers")
    assert_nothing_left(memory)


def test_a_login_that_fails_against_the_pinned_keys_is_never_ready(
    memory: Service, login_key: Path, host_key: str
) -> None:
    memory.host_keys = (host_key,)
    with not_sshd() as port:
        memory.forward_port = port
        _shown, outcome = run(launch_plan(login_key, timeout=1.5))
    assert isinstance(outcome, LaunchFailed) and "instance 0: " in str(outcome)
    assert "nothing answers" not in str(outcome) and "printed no host key" not in str(outcome)
    assert memory.counts["output"] >= 1  # its host keys were read, pinned, and ssh ran against them
    assert_nothing_left(memory)


def test_an_sshd_that_printed_no_host_key_is_never_ready(memory: Service, login_key: Path) -> None:
    with not_sshd() as port:
        memory.forward_port = port
        _shown, outcome = run(launch_plan(login_key, timeout=1))
    assert isinstance(outcome, LaunchFailed)
    assert str(outcome).endswith("sshd answers but printed no host key (not started by qimg-start?)")
    assert_nothing_left(memory)


# --- the way out ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_stop_does_not_cut_it(memory: Service, login_key: Path, signum: int) -> None:
    memory.forward_port, memory.signal_at["stop"] = None, (1, signum)
    _shown, outcome = run(launch_plan(login_key, timeout=0.3))
    assert isinstance(outcome, LaunchFailed)  # the launch's own failure, not the signal
    assert_nothing_left(memory)


def test_a_stop_that_fails_keeps_the_record_for_qimg_stop(memory: Service, login_key: Path) -> None:
    memory.forward_port, memory.fail_at["stop"] = None, {1}
    shown, outcome = run(launch_plan(login_key, timeout=0.3))
    assert isinstance(outcome, LaunchFailed)
    (task_id,) = memory.tasks
    assert f"could not stop task {task_id}: the memory service failed stop #1 (stop it with `qimg stop`)" in (
        shown.notes
    )
    record = records.load(NAME)
    assert record is not None and record.task_id == task_id and record.backend == "memory"
    # `qimg stop NAME` (without an option: the default backend) finds it by its record, on the
    # backend the record names, and stops it.
    opened, stopped = tasks.stop(NAME, registry.DEFAULT)
    assert (opened.name, stopped) == ("memory", [(NAME, task_id)])
    assert_nothing_left(memory)


def test_a_launch_whose_tasks_cannot_be_listed_still_stops_its_own(memory: Service, login_key: Path) -> None:
    memory.forward_port, memory.fail_at["launched"] = None, {1}
    shown, outcome = run(launch_plan(login_key, timeout=0.3))
    assert isinstance(outcome, LaunchFailed)
    assert any(line.startswith("could not list the tasks of this launch") for line in shown.notes)
    assert memory.tasks == {}
    # Another task of the launch could exist unseen: the record stays for `qimg stop NAME`.
    assert records.load(NAME) is not None


def test_keep_keeps_the_task_and_its_record(memory: Service, login_key: Path) -> None:
    memory.forward_port = None
    shown, outcome = run(launch_plan(login_key, timeout=0.3, keep=True))
    assert isinstance(outcome, LaunchFailed)
    (task_id,) = memory.tasks
    assert "stop" not in memory.counts
    assert f"task {task_id} kept (--keep): stop it with `qimg stop {NAME}`" in shown.notes
    record = records.load(NAME)
    assert record is not None and record.task_id == task_id


# --- the results ----------------------------------------------------------------------------------


def test_the_results_come_down_before_the_task_is_stopped(
    memory: Service, login_key: Path, tmp_path: Path
) -> None:
    memory.forward_port = None
    plan = launch_plan(login_key, timeout=0.3, data_plan=data_planned(tmp_path, results=True))
    assert plan.data is not None
    memory.workdir = {"out/made.txt": b"made"}  # what the task leaves in its working directory
    _shown, outcome = run(plan)
    assert isinstance(outcome, LaunchFailed)
    calls = [call for call, _ in memory.calls]
    assert calls.index("abort") < calls.index("download") < calls.index("stop")
    assert (tmp_path / "results" / "out" / "made.txt").read_text() == "made"
    assert not data.is_pending(plan.data.results_bucket)
    assert_nothing_left(memory)
    assert set(memory.buckets) == set(plan.data.buckets)  # kept: `qimg stop --purge` deletes them


def test_a_signal_during_the_results_stops_the_task_then_ends_qimg(
    memory: Service, login_key: Path, tmp_path: Path
) -> None:
    memory.forward_port, memory.signal_at["abort"] = None, (1, signal.SIGTERM)
    plan = launch_plan(login_key, timeout=0.3, data_plan=data_planned(tmp_path, results=True))
    _shown, outcome = run(plan)
    assert isinstance(outcome, Interrupted) and outcome.exit_code == 128 + signal.SIGTERM
    assert plan.data is not None and data.is_pending(plan.data.results_bucket)
    assert_nothing_left(memory)


def test_a_task_uploading_its_results_is_not_deleted(
    memory: Service, login_key: Path, tmp_path: Path
) -> None:
    memory.forward_port, memory.upload_looks, memory.signal_while_uploading = None, None, signal.SIGINT
    plan = launch_plan(login_key, timeout=0.3, data_plan=data_planned(tmp_path, results=True))
    shown, outcome = run(plan)
    assert isinstance(outcome, Interrupted) and outcome.exit_code == 128 + signal.SIGINT
    (task_id,) = memory.tasks
    assert memory.tasks[task_id].state == "UploadingResults" and "stop" not in memory.counts
    assert any(line.startswith(f"task {task_id} not deleted: ") for line in shown.notes)
    record = records.load(NAME)
    assert record is not None and record.task_id == task_id  # `qimg stop NAME` deletes it once done


# --- a batch run: the success path without a login ------------------------------------------------


@pytest.mark.parametrize(("end", "code"), [("Success", 0), ("Failure", 1)])
def test_a_batch_task_ends_and_is_stopped(
    memory: Service, login_key: Path, capsys: pytest.CaptureFixture[str], end: str, code: int
) -> None:
    memory.ends_after, memory.end_state = 2, end
    memory.stdout, memory.stderr = "qimg-start: running the command\ncomputed 42\n", "a warning\n"
    shown, outcome = run(launch_plan(login_key, command="make", batch=True))
    assert outcome == code
    printed = capsys.readouterr()
    assert (printed.out, printed.err) == ("computed 42\n", "a warning\n")  # qimg's own lines left out
    assert (f"task {NAME} ended Failure" in shown.notes) is (end == "Failure")
    assert_nothing_left(memory)


def test_a_signal_while_a_batch_task_runs_stops_it(memory: Service, login_key: Path) -> None:
    memory.ends_after, memory.signal_at["view"] = 50, (4, signal.SIGTERM)
    _shown, outcome = run(launch_plan(login_key, command="make", batch=True))
    assert isinstance(outcome, Interrupted)
    assert_nothing_left(memory)


def test_every_record_left_is_one_qimg_reads_back(memory: Service, login_key: Path) -> None:
    """The kept record of a memory task is a valid record: not set aside as broken by the next command."""
    memory.forward_port = None
    run(launch_plan(login_key, timeout=0.3, keep=True))
    text = json.loads((records.records_dir() / f"{NAME}.json").read_text())
    assert text["backend"] == "memory"
    found, problems = records.all_records()
    assert [record.name for record in found] == [NAME] and problems == []
