"""What the real Qarnot does that a kind service would not, met by `qimg run` through the real SDK:
each test names the item of the fault table (README) it proves. After every test the `fake` fixture
checks that no task is left that is not over, and no container."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot, Faults
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD
from tests.helpers import assert_one_line_error

pytestmark = pytest.mark.docker


def start_run(user: User, image: str) -> subprocess.Popen[str]:
    """`qimg run IMAGE` in the background, the registry password on its stdin."""
    process = user.background("run", image, *LOGIN, stdin=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(REGISTRY_PASSWORD + "\n")
    process.stdin.close()
    process.stdin = None  # closed: communicate() must not flush it again
    return process


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)


def test_1_a_gateway_error_after_create_leaves_one_task(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    """[1] The API created the task, then the gateway answered 504: qimg does not submit again blindly,
    finds what the launch created by its tag, follows one task and deletes every other."""
    fake.faults = Faults(gateway_error_after_create=504, gateway_error_times=2)
    result = user.launch(pushed_image, "--command", "whoami")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice"
    assert fake.count("POST", "/tasks") == 1  # creation is never retried by the SDK here
    assert fake.tasks == {}


def test_1_a_lost_read_after_create_keeps_the_task(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    """[1] The GET the SDK sends right after the POST answers 404: the uuid is kept and followed."""
    fake.faults = Faults(missing_after_create=1)
    result = user.launch(pushed_image, "--command", "whoami")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice" and fake.tasks == {}


def test_2_a_signal_during_creation_still_stops_the_task(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    """[2] Ctrl-C while POST /tasks is on its way: the signal waits until the task is known, then the
    task is stopped."""
    fake.faults = Faults(slow_seconds=2)
    process = start_run(user, pushed_image)
    wait_for(lambda: fake.count("POST", "/tasks") > 0, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "stopped and deleted" in stderr and "Traceback" not in stderr
    assert fake.count("POST", "/tasks") == 1 and fake.tasks == {}


def test_3_a_hung_reply_is_cut_and_the_read_retried(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    """[3] A reply that never comes: every request has a timeout (QARNOT_CLUSTER_TIMEOUT shortens it
    here), and a read that timed out is sent again."""
    fake.faults = Faults(hang_next=1, hang_paths=(r"GET /tasks/[0-9a-f-]{36}",))
    result = user.launch(pushed_image, "--command", "whoami", env={"QARNOT_CLUSTER_TIMEOUT": "2"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice" and fake.tasks == {}


def test_3_ls_does_not_wait_for_a_failing_credits_endpoint(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    """[3] The credits endpoint answers 503: one request per task, no retries, and `ls` still lists."""
    assert user.launch(pushed_image, "--name", "cost").returncode == 0
    fake.faults = Faults(credits_unavailable=True)
    listed = user.qimg("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"credits": null' in listed.stdout and '"name": "cost"' in listed.stdout
    credits_requests = [path for method, path in fake.requests if path.startswith("/credits/")]
    assert len(credits_requests) == 1
    assert user.qimg("stop", "cost").returncode == 0


@pytest.mark.parametrize("state", ["UploadingResults", "DownloadingResults", "PendingCancel"])
def test_10_ending_states_end_the_wait(pushed_image: str, fake: FakeQarnot, user: User, state: str) -> None:
    """[10] A task that will never run sshd again ends the wait at once, and is deleted."""
    fake.faults = Faults(forward_delay=600)
    process = start_run(user, pushed_image)
    wait_for(lambda: any(task.state == "FullyExecuting" for task in fake.tasks.values()), process)
    (task,) = fake.tasks.values()
    fake.end_task(task.uuid, state)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert f"task {state.lower()} before ssh was ready" in stderr
    assert fake.tasks == {}


def test_10_stop_all_keeps_going_and_a_task_gone_counts_as_stopped(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    """[10] One DELETE refused does not leave the other tasks running; a task deleted elsewhere is
    stopped as far as qimg is concerned, and its record dropped."""
    for name in ("first", "second", "third"):
        assert user.launch(pushed_image, "--name", name).returncode == 0
    by_name = {task.name: task.uuid for task in fake.tasks.values()}
    fake.faults = Faults(delete_refused={by_name["first"]})
    refused = user.qimg("stop", "--all")
    assert_one_line_error(refused, 1, "could not stop 1 of 3 tasks", "first")
    assert set(fake.tasks) == {by_name["first"]}
    fake.faults = Faults()
    fake.delete(fake.tasks[by_name["first"]])  # deleted elsewhere (the console, another machine)
    gone = user.qimg("stop", "first")
    assert gone.returncode == 0, gone.stderr
    assert not (user.home.parent / "state" / "qimg" / "tasks" / "first.json").exists()
