"""Task creation as a shared, rate-limited Qarnot answers it, through the real SDK: refusals (429, 503
with or without Retry-After) are sent again; an unclear outcome (504 or a dropped connection after the
task was made, a listing that lags) is settled by the launch's tag, never by a blind second task.
Each launch must end with one task, ready for a real ssh login, and nothing left after `stop` (the
`fake` fixture checks). Issue 15, section 2, item 1."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from qimg.launcher.data import WORKDIR
from tests.e2e.conftest import User
from tests.e2e.test_launch_faults import start_run, wait_for
from tests.fakes.qarnot import FakeQarnot, Faults
from tests.fakes.s3 import S3

pytestmark = pytest.mark.docker


def launch_one(user: User, image: str, fake: FakeQarnot, name: str) -> None:
    """`qimg run` keeps the task: exactly one exists, a login works, and `stop` leaves nothing."""
    result = user.launch(image, "--name", name)
    assert result.returncode == 0, result.stderr
    assert [task.name for task in fake.live()] == [name], "one task, not two"
    login = user.qimg("ssh", name, "whoami")
    assert login.returncode == 0 and login.stdout.strip() == "alice", login.stderr
    assert [task.name for task in fake.live()] == [name], "no second task appeared later"
    stopped = user.qimg("stop", name)
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize(
    ("refusals", "retry_after"),
    [([429, 429, 429], None), ([503, 503], None), ([503], 3)],
    ids=["429", "503", "503-retry-after"],
)
def test_a_refused_creation_is_sent_again(
    pushed_image: str, fake: FakeQarnot, user: User, refusals: list[int], retry_after: int | None
) -> None:
    """Nothing was created by a 429 or a 503: the creation is sent again after a wait (a Retry-After
    not yet over gets another 503 from the fake)."""
    fake.faults = Faults(create_refusals=list(refusals), create_retry_after=retry_after)
    launch_one(user, pushed_image, fake, "busy")
    assert fake.count("POST", "/tasks") >= len(refusals) + 1
    assert fake.faults.create_refusals == []


def test_a_refused_creation_keeps_its_inputs(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    """The inputs uploaded before the creation stay while it is refused, and the task reads them; an
    instant snapshot (its state read without the SDK's private attributes) works on it."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hello.txt").write_text("hi\n")
    fake.faults = Faults(create_refusals=[429, 503])
    upload = ("--upload", str(tmp_path / "in"), "--results", str(tmp_path / "out"))
    launched = user.launch(pushed_image, "--name", "inputs", *upload)
    assert launched.returncode == 0, launched.stderr
    seen = user.qimg("ssh", "inputs", "--", f"cat {WORKDIR}/in/hello.txt")
    assert seen.returncode == 0 and seen.stdout == "hi\n", seen.stderr
    snapshot = user.qimg("snapshot", "inputs")
    assert snapshot.returncode == 0, snapshot.stderr
    assert user.qimg("stop", "--purge", "inputs").returncode == 0
    assert storage.bucket_names() == []


def test_refusals_that_never_end_fail_in_one_line_and_leave_nothing(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    fake.faults = Faults(create_refusals=[429] * 30)
    result = user.launch(pushed_image, "--name", "never")
    assert result.returncode == 1, result.stderr
    assert "submitting the task" in result.stderr and "try again later" in result.stderr
    assert "Traceback" not in result.stderr and fake.tasks == {}
    assert not (user.home.parent / "state" / "qimg" / "tasks" / "never.json").exists()


@pytest.mark.parametrize(
    "faults",
    [
        Faults(gateway_error_after_create=504, listing_lag=3),
        Faults(drop_after_create=1, listing_lag=3),
    ],
    ids=["504-after-create", "dropped-after-create"],
)
def test_an_unclear_creation_is_found_by_its_tag_not_sent_again(
    pushed_image: str, fake: FakeQarnot, user: User, faults: Faults
) -> None:
    """The task exists but its id never came back, and listings miss it for 3 s: qimg lists the
    launch's tag until it shows, and sends no second creation."""
    fake.faults = faults
    launch_one(user, pushed_image, fake, "unclear")
    assert fake.count("POST", "/tasks") == 1
    assert fake.count("POST", "/tasks/paginate") >= 2  # the first listing came too early


def test_a_creation_that_was_not_made_is_sent_again_once_listings_settle(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    """The connection dropped before the task was made, and the listing lags: no task shows for
    the whole listing window, so the creation is sent again, once: exactly one task."""
    fake.faults = Faults(drop_before_create=1, listing_lag=3)
    launch_one(user, pushed_image, fake, "resent")
    assert fake.count("POST", "/tasks") == 2


@pytest.mark.parametrize("everything", [False, True], ids=["stop-NAME", "stop-all"])
def test_an_unsettled_creation_keeps_its_record_for_stop(
    pushed_image: str, fake: FakeQarnot, user: User, everything: bool
) -> None:
    """Ctrl-C while qimg looks for the task of an unclear creation: it exits at once (130) rather than
    after the listing window, keeps the launch's record, and `qimg stop NAME` later finds the task by
    its tag, and so does `stop --all`."""
    fake.faults = Faults(drop_after_create=1, listing_lag=15)
    process = start_run(user, pushed_image)
    wait_for(lambda: fake.count("POST", "/tasks/paginate") >= 1 and len(fake.tasks) == 1, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "qimg stop" in stderr
    (task,) = fake.live()
    record = user.home.parent / "state" / "qimg" / "tasks" / f"{task.name}.json"
    assert record.exists(), "the record is kept while the task may still be listed"
    while not fake.is_listed_yet(task):
        time.sleep(0.2)
    stopped = user.qimg("stop", "--all") if everything else user.qimg("stop", task.name)
    assert stopped.returncode == 0, stopped.stderr
    assert fake.live() == [] and not record.exists()
