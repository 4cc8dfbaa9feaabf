"""Data through Qarnot's buckets: the real SDK against the fake API, whose storage is a real S3
emulator (moto's server on 127.0.0.1), and whose tasks see their resource buckets in their working
directory and upload it to their result bucket on a snapshot, at the end and on cancellation."""

from __future__ import annotations

import filecmp
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qimg.errors import QimgError
from qimg.launcher import bucket_io, data
from qimg.launcher.backends import registry
from qimg.launcher.data import WORKDIR
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot, Faults
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD
from tests.fakes.s3 import S3
from tests.helpers import assert_one_line_error

pytestmark = pytest.mark.docker
BINARY = bytes(range(256)) * 40 + os.urandom(9 * 1024 * 1024)  # past the SDK's 8 MB multipart threshold


def make_tree(root: Path) -> Path:
    """Text, binary, an empty file, nested and empty directories, names with spaces."""
    (root / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (root / "empty dir").mkdir()
    (root / "notes.txt").write_text("line one\nligne deux, été\n")
    (root / "blob.bin").write_bytes(BINARY)
    (root / "empty").write_bytes(b"")
    (root / "a name with spaces.txt").write_text("spaces\n")
    (root / "nested" / "deeper" / "deepest" / "leaf.txt").write_text("leaf\n")
    (root / "nested" / "mid.dat").write_bytes(b"\x00\x01\xff" * 1000)
    return root


def assert_same_tree(expected: Path, actual: Path) -> None:
    """Byte for byte: the same names, the same directories (empty ones too), the same contents."""

    def listing(root: Path) -> list[str]:
        return sorted(
            str(path.relative_to(root)) + ("/" if path.is_dir() else "") for path in root.rglob("*")
        )

    assert listing(actual) == listing(expected)
    for path in expected.rglob("*"):
        if path.is_file():
            assert filecmp.cmp(path, actual / path.relative_to(expected), shallow=False), path


def test_upload_snapshot_fetch_stop_round_trip(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    source = make_tree(tmp_path / "inputs")
    results = tmp_path / "results"
    launched = user.launch(
        pushed_image, "--name", "data1", "--upload", str(source), "--results", str(results)
    )
    assert launched.returncode == 0, launched.stderr
    (task,) = fake.tasks.values()
    assert task.constants["DOCKER_WORKDIR"] == WORKDIR == "/job"
    inputs_bucket, results_bucket = task.resource_buckets[0], task.result_bucket
    assert inputs_bucket.startswith("qimg-data1-in-") and results_bucket.startswith("qimg-data1-out-")
    assert task.upload_results_on_cancellation
    assert "uploaded 6 files" in launched.stderr
    assert "\x1b[" not in launched.stderr  # progress bars only on a terminal

    # The task sees the inputs in its working directory, and writes there.
    seen = user.qimg("ssh", "data1", "--", f"cat '{WORKDIR}/inputs/a name with spaces.txt'; "
                     f"echo made-in-task > {WORKDIR}/out.txt")  # fmt: skip
    assert seen.returncode == 0 and seen.stdout == "spaces\n", seen.stderr

    assert user.qimg("snapshot", "data1").returncode == 0
    fetched = user.qimg("fetch", "data1", str(tmp_path / "fetched"))
    assert fetched.returncode == 0, fetched.stderr
    # The inputs are in their own bucket: snapshots and results leave them out (the fake honours it).
    assert sorted(path.name for path in (tmp_path / "fetched").iterdir()) == ["out.txt"]
    assert (tmp_path / "fetched" / "out.txt").read_text() == "made-in-task\n"
    assert re.fullmatch(fake.body("POST", "/tasks")["snapshotBlacklist"], "inputs/nested/mid.dat")

    # Written after the snapshot: the stop asks for the results again before deleting the task.
    assert user.qimg("ssh", "data1", "--", f"echo later > {WORKDIR}/later.txt").returncode == 0
    stopped = user.qimg("stop", "data1")
    assert stopped.returncode == 0, stopped.stderr
    assert fake.tasks == {}
    assert sorted(path.name for path in results.iterdir()) == ["later.txt", "out.txt"]
    assert (results / "later.txt").read_text() == "later\n"

    listed = json.loads(user.qimg("ls", "--buckets", "--json").stdout)
    assert {(b["name"], b["kind"], b["pending_download"]) for b in listed["buckets"]} == {
        (inputs_bucket, "inputs", False), (results_bucket, "results", False),
    }  # fmt: skip
    purged = user.qimg("stop", "--purge", "data1")
    assert purged.returncode == 0, purged.stderr
    assert storage.bucket_names() == []


def test_results_come_down_when_the_command_ends(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    results = tmp_path / "new" / "results"
    command = f"cd {WORKDIR} && mkdir -p deep/er && printf 'x\\000y' > deep/er/bin && echo done > r.txt"
    result = user.launch(pushed_image, "--name", "cmd1", "--results", str(results), "--snapshot-every", "1h",
                 "--command", command)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (results / "r.txt").read_text() == "done\n"
    assert (results / "deep" / "er" / "bin").read_bytes() == b"x\x00y"
    assert fake.tasks == {}
    # Periodic snapshots were asked for; at the end: a snapshot, then the abort (which uploads the
    # results too), then the delete (the fake uploads nothing then, and drops the working directory).
    (task_id,) = {path.split("/")[2] for method, path in fake.requests if method == "DELETE"}
    assert ("POST", f"/tasks/{task_id}/snapshot/periodic") in fake.requests
    when = fake.requests.index
    assert when(("POST", f"/tasks/{task_id}/snapshot")) < when(("POST", f"/tasks/{task_id}/abort"))
    assert when(("POST", f"/tasks/{task_id}/abort")) < when(("DELETE", f"/tasks/{task_id}"))
    (bucket,) = storage.bucket_names()
    assert bucket.startswith("qimg-cmd1-out-") and "`qimg stop --purge cmd1`" in result.stderr
    purged = user.qimg("stop", "--purge", "cmd1")
    assert purged.returncode == 0 and f"deleted bucket {bucket}" in purged.stdout, purged.stderr
    assert storage.bucket_names() == []


def _workdirs(fake: FakeQarnot) -> list[Path]:
    with fake.lock:
        return [i.workdir for task in fake.tasks.values() for i in task.instances if i.workdir is not None]


def test_sigterm_during_the_command_still_brings_the_results_down(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    command = f"echo before-the-signal > {WORKDIR}/partial.txt; sleep 600"
    password = tmp_path / "password"
    password.write_text(REGISTRY_PASSWORD + "\n")
    with password.open() as stdin:
        process = user.background(
            "run", pushed_image, *LOGIN, "--name", "term", "--results", str(results), "--command", command,
            stdin=stdin,
        )  # fmt: skip
    deadline = time.monotonic() + 120  # a guard against a hang, not a measure
    while not any(
        i.workdir and (i.workdir / "partial.txt").exists() for t in fake.tasks.values() for i in t.instances
    ):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert (results / "partial.txt").read_text() == "before-the-signal\n"
    assert fake.tasks == {} and "stopped and deleted" in stderr
    assert user.qimg("stop", "--purge", "term").returncode == 0 and storage.bucket_names() == []


def test_a_failed_download_keeps_the_bucket_until_it_is_fetched(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    assert user.launch(pushed_image, "--name", "evil", "--results", str(results)).returncode == 0
    (task,) = fake.tasks.values()
    bucket = task.result_bucket
    assert user.qimg("ssh", "evil", "--", f"echo fine > {WORKDIR}/fine.txt").returncode == 0
    # Anyone with access to the bucket (the task itself, too) can write keys that lead elsewhere.
    hostile = ["../escape.txt", "/tmp/qimg-absolute-key.txt", "fine/../../escape2.txt"]
    for key in hostile:
        storage.put(bucket, key, b"evil")

    stopped = user.qimg("stop", "evil")
    assert stopped.returncode == 0, stopped.stderr
    assert fake.tasks == {}, "billing stops all the same"
    assert "results of evil not downloaded: 3 of the 4 objects" in stopped.stderr
    assert f"`qimg fetch {bucket} DIR` downloads them" in stopped.stderr
    assert (results / "fine.txt").read_text() == "fine\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home", "results", "state"]
    assert not Path("/tmp/qimg-absolute-key.txt").exists()

    kept = user.qimg("stop", "--purge", "evil")
    assert kept.returncode == 0 and "never downloaded" in kept.stderr, kept.stderr
    assert storage.bucket_names() == [bucket]
    (listed,) = json.loads(user.qimg("ls", "--buckets", "--json").stdout)["buckets"]
    assert listed["name"] == bucket and listed["pending_download"] is True

    for key in hostile:
        storage.client.delete_object(Bucket=bucket, Key=key)
    fetched = user.qimg("fetch", "evil")  # into the recorded --results directory, which it may update
    assert fetched.returncode == 0 and str(results) in fetched.stdout, fetched.stderr
    assert user.qimg("stop", "--purge", "evil").returncode == 0
    assert storage.bucket_names() == []


def test_ls_buckets_and_purge_touch_only_qimgs(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    others = ["someone-elses", "qimg-x-in-zzzzzzzz", "qimg-notes"]
    for name in others:
        storage.client.create_bucket(Bucket=name)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f").write_text("f")
    result = user.launch(pushed_image, "--name", "p1", "--upload", str(tmp_path / "in"), "--command", "true")
    assert result.returncode == 0, result.stderr
    (mine,) = [name for name in storage.bucket_names() if name not in others]
    listed = json.loads(user.qimg("ls", "--buckets", "--json").stdout)["buckets"]
    assert [(b["name"], b["task"], b["kind"], b["objects"]) for b in listed] == [(mine, "p1", "inputs", 1)]
    table = user.qimg("ls", "--buckets")
    assert mine in table.stdout and "someone-elses" not in table.stdout

    purged = user.qimg("stop", "--all", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.splitlines()[-1] == f"deleted bucket {mine}"  # (the deleted task may linger)
    assert storage.bucket_names() == sorted(others)
    for name in others:
        storage.client.delete_bucket(Bucket=name)


def _dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "f").write_text("f")
    return path


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("precious\n")
    return path


def _with_link(path: Path) -> Path:
    _dir(path / "sub")
    (path / "sub" / "key").symlink_to("/etc/hostname")
    return path


BAD_RUNS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "missing upload dir": (lambda t: ["--upload", str(t / "nope")], "no such directory"),
    "file as upload dir": (lambda t: ["--upload", str(_file(t / "file"))], "not a directory"),
    "link inside upload": (lambda t: ["--upload", str(_with_link(t / "up"))], "a symbolic link"),
    "two uploads, one name": (
        lambda t: ["--upload", str(_dir(t / "a" / "data")), "--upload", str(_dir(t / "b" / "data"))],
        "also named 'data'",
    ),
    "bad duration": (lambda t: ["--results", str(t / "r"), "--snapshot-every", "often"], "--snapshot-every"),
    "zero duration": (lambda t: ["--results", str(t / "r"), "--snapshot-every", "0"], "--snapshot-every"),
    "snapshots without results": (lambda t: ["--snapshot-every", "1h"], "give --results DIR too"),
    "results into a non-empty dir": (lambda t: ["--results", str(_dir(t / "full"))], "not empty"),
    "results into a file": (lambda t: ["--results", str(_file(t / "file"))], "not a directory"),
    "local with data": (lambda t: ["--local", "--upload", str(_dir(t / "up"))], "local engine has none"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_data_options_create_nothing(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path, case: str
) -> None:
    make_args, fragment = BAD_RUNS[case]
    work = tmp_path / "work"
    work.mkdir()
    result = user.launch(pushed_image, *make_args(work))
    assert_one_line_error(result, 2, fragment)
    assert fake.count("POST", "/tasks") == 0 and storage.bucket_names() == []
    files = [path for path in work.rglob("*") if path.is_file() and not path.is_symlink()]
    assert all(path.read_text() in {"f", "precious\n"} for path in files)  # nothing written into them


BAD_COMMANDS: dict[str, tuple[list[str], str]] = {
    "fetch on local": (["fetch", "t1", "--local"], "local engine has none"),
    "snapshot on local": (["snapshot", "t1", "--local"], "local engine has none"),
    "ls --buckets on local": (["ls", "--buckets", "--local"], "local engine has none"),
    "purge on local": (["stop", "--all", "--purge", "--local"], "local engine has none"),
    "fetch an inputs bucket": (["fetch", "qimg-t1-in-0123abcd"], "holds a task's inputs"),
    "fetch a bad name": (["fetch", "Bad Name"], "invalid --name"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_bad_data_commands(fake: FakeQarnot, storage: S3, user: User, case: str) -> None:
    args, fragment = BAD_COMMANDS[case]
    assert_one_line_error(user.qimg(*args), 2, fragment)
    assert storage.bucket_names() == []


def test_fetch_refuses_a_non_empty_directory_first(
    fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    target = _dir(tmp_path / "full")
    assert_one_line_error(user.qimg("fetch", "t1", str(target)), 2, "not empty")
    assert fake.requests == [] and (target / "f").read_text() == "f"  # refused before connecting


def test_no_bucket_storage_is_said_before_anything_is_created(
    pushed_image: str, fake: FakeQarnot, user: User, tmp_path: Path
) -> None:
    result = user.launch(pushed_image, "--upload", str(_dir(tmp_path / "in")))  # the fake's storage is off
    assert_one_line_error(result, 1, "has no bucket storage")
    assert fake.count("POST", "/tasks") == 0


def _swap_file(source: Path, outside: Path) -> None:
    (source / "sub" / "zz-last").unlink()
    (source / "sub" / "zz-last").symlink_to(outside / "secret.txt")


def _swap_directory(source: Path, outside: Path) -> None:
    (source / "sub").rename(source / "moved")
    (source / "sub").symlink_to(outside)


@pytest.mark.parametrize("swap", [_swap_file, _swap_directory])
def test_a_link_swapped_in_after_the_walk_is_not_followed_by_the_upload(
    fake: FakeQarnot, storage: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    swap: Callable[[Path, Path], None],
) -> None:  # fmt: skip
    """adversarial-3 F2, made deterministic: the racer's swap lands between the walk that checked the
    directory and the upload that reads it (the real SDK's S3 client, moto behind the fake API)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("QARNOT_CLUSTER_URL", fake.url)
    monkeypatch.setenv("QARNOT_CLIENT_TOKEN", fake.token)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET-OUTSIDE")
    (outside / "zz-last").write_text("TOP-SECRET-OUTSIDE")
    source = tmp_path / "data"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "sub" / "zz-last").write_text("fine")
    checked = data.check_options((source,), None, 0, registry.DEFAULT)
    assert checked is not None
    plan = checked.planned("race", "0123abcd0123abcd")
    swap(source, outside)
    backend = registry.open_backend("qarnot")
    notes: list[str] = []
    with pytest.raises(QimgError, match="changed during the upload") as refused:
        bucket_io.stage(backend, plan, "race", notes.append, None)
    assert "\n" not in str(refused.value)
    sent = [
        storage.client.get_object(Bucket=plan.inputs_bucket, Key=item["Key"])["Body"].read()
        for item in storage.client.list_objects_v2(Bucket=plan.inputs_bucket).get("Contents", [])
    ]
    assert b"TOP-SECRET-OUTSIDE" not in sent
    bucket_io.end_of_launch(backend, plan, "race", "", notes.append, None)  # no task: its bucket goes
    assert storage.bucket_names() == []


def test_purge_all_goes_on_past_a_bucket_it_cannot_delete(fake: FakeQarnot, storage: S3, user: User) -> None:
    """adversarial-3 F13: a bucket that cannot be deleted (here: an object under a legal hold stays,
    so the bucket is never empty) does not keep the others."""
    storage.client.create_bucket(Bucket="qimg-evil-out-0123abcd", ObjectLockEnabledForBucket=True)
    storage.client.put_object(
        Bucket="qimg-evil-out-0123abcd", Key="held", Body=b"x", ObjectLockLegalHoldStatus="ON"
    )
    for name in ("qimg-a-in-0000aaaa", "qimg-z-out-0000cccc"):
        storage.client.create_bucket(Bucket=name)
    purged = user.qimg("stop", "--all", "--purge")
    assert_one_line_error(purged, 1, "could not delete 1 bucket(s): qimg-evil-out-0123abcd")
    assert "deleted bucket qimg-a-in-0000aaaa" in purged.stdout
    assert "deleted bucket qimg-z-out-0000cccc" in purged.stdout
    assert storage.bucket_names() == ["qimg-evil-out-0123abcd"]
    storage.reset()  # what qimg could not delete


def test_results_come_down_although_reads_fail_while_the_task_uploads(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    """Every read of the task answers 503 while it is UploadingResults (the SDK's retries run out):
    the wait rides them out, and the task is deleted only once it is Cancelled."""
    fake.upload_seconds = 12.0  # longer than the SDK's retries of two reads (3.5 s each)
    fake.faults.status_while_uploading = 503
    results_dir = tmp_path / "results"
    command = f"echo done > {WORKDIR}/r.txt"
    result = user.launch(pushed_image, "--name", "up1", "--results", str(results_dir), "--command", command)
    assert result.returncode == 0, result.stderr
    assert (results_dir / "r.txt").read_text() == "done\n", result.stderr
    assert fake.deleted_in == ["Cancelled"] and fake.tasks == {}
    assert user.qimg("stop", "--purge", "up1").returncode == 0 and storage.bucket_names() == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_results_download_of_stop_exits_with_it(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path, signum: int
) -> None:
    """adversarial-3 F5: exit 130/143 (not 0), the task stopped all the same, the results pending."""
    results_dir = tmp_path / "results"
    assert user.launch(pushed_image, "--name", "sig", "--results", str(results_dir)).returncode == 0
    made = user.qimg("ssh", "sig", "--", f"head -c 100000000 /dev/urandom > {WORKDIR}/big.bin")
    assert made.returncode == 0, made.stderr
    process = user.background("stop", "sig")
    deadline = time.monotonic() + 120  # a guard against a hang, not a measure
    while not (results_dir.exists() and any(results_dir.iterdir())):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert "results of sig not downloaded: interrupted" in stderr
    assert fake.tasks == {} and list(results_dir.iterdir()) == []  # stopped; no partial file left
    (listed,) = json.loads(user.qimg("ls", "--buckets", "--json").stdout)["buckets"]
    assert listed["pending_download"] is True
    assert user.qimg("fetch", "sig").returncode == 0 and (results_dir / "big.bin").stat().st_size == 10**8
    assert user.qimg("stop", "--purge", "sig").returncode == 0 and storage.bucket_names() == []


def test_the_login_user_owns_the_working_directory_and_writes_results_there(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    """The platform's /job is root's (the fake makes it so): qimg-start gives it, inputs included, to
    the login user, who can then write results beside and into the inputs."""
    source = _dir(tmp_path / "data")
    results_dir = tmp_path / "results"
    command = (
        f"stat -c '%U %a' {WORKDIR} {WORKDIR}/data/f && echo made > {WORKDIR}/made.txt && "
        f"echo changed > {WORKDIR}/data/f"
    )
    result = user.launch(
        pushed_image,
        "--name",
        "own",
        "--upload",
        str(source),
        "--results",
        str(results_dir),
        "--command",
        command,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["alice 755", "alice 644"], result.stdout
    assert (results_dir / "made.txt").read_text() == "made\n"
    assert user.qimg("stop", "--purge", "own").returncode == 0 and storage.bucket_names() == []


def test_a_failure_after_the_task_exists_stops_it_and_keeps_its_buckets(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    """Asking for periodic snapshots fails once the task exists: its id is kept, its results come
    down, it is stopped, and no bucket is deleted under it (they stay for `stop --purge`)."""
    fake.faults.periodic_snapshot_refused = True
    results_dir = tmp_path / "results"
    result = user.launch(pushed_image, "--name", "after", "--upload", str(_dir(tmp_path / "in")),
                 "--results", str(results_dir), "--snapshot-every", "1h")  # fmt: skip
    assert result.returncode == 1 and "asking for periodic snapshots" in result.stderr, result.stderr
    assert fake.tasks == {} and fake.deleted_in == ["Cancelled"], result.stderr
    assert len(storage.bucket_names()) == 2 and results_dir.is_dir()
    assert user.qimg("stop", "--purge", "after").returncode == 0 and storage.bucket_names() == []


def test_a_launch_whose_creation_reply_is_lost_finds_its_task_and_deletes_no_bucket_under_it(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    """The creation's reply is lost (504 after the task was made) and so are the first tag listings
    after it: qimg rides them out, finds the one task by its tag (one POST), and its stop deletes the
    task before the buckets it reads."""
    fake.faults.gateway_error_after_create = 504
    fake.faults.hang_next, fake.faults.hang_paths, fake.faults.hang_seconds = (
        5,
        ("POST /tasks/paginate",),
        0.1,
    )
    result = user.launch(pushed_image, "--name", "lost", "--upload", str(_dir(tmp_path / "in")))
    assert result.returncode == 0, result.stderr
    assert fake.count("POST", "/tasks") == 1 and len(fake.tasks) == 1 and fake.faults.hang_next == 0
    assert user.qimg("stop", "--purge", "lost").returncode == 0
    assert fake.tasks == {} and len(fake.buckets_at_delete) == 1
    (at_delete,) = fake.buckets_at_delete
    assert at_delete and at_delete[0].startswith("qimg-lost-in-"), "a bucket was deleted under its task"
    assert storage.bucket_names() == []  # then deleted, the task being gone


def test_a_launch_that_lost_its_task_id_stops_its_tasks_before_deleting_its_buckets(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    """The creation's reply is lost (the connection dropped after the task was made) and the listing
    lags; Ctrl-C while qimg looks for the task: it never learns the id. The way out keeps the buckets
    (a task of the launch may still appear); `qimg stop --purge NAME` then stops the launch's tasks by
    their tag first, and only then deletes the buckets they read. (Before the creation was reconciled
    by listing for a minute, lost listings were enough to lose the id; now only a signal is.)"""
    fake.faults = Faults(drop_after_create=1, listing_lag=15)
    upload = ("--upload", str(_dir(tmp_path / "in")))
    process = user.background(
        "run", pushed_image, *LOGIN, "--timeout", "120", "--name", "lost", *upload, stdin=subprocess.PIPE
    )
    assert process.stdin is not None
    process.stdin.write(REGISTRY_PASSWORD + "\n")
    process.stdin.close()
    process.stdin = None  # closed: communicate() must not flush it again
    deadline = time.monotonic() + 60
    while not (fake.count("POST", "/tasks/paginate") >= 1 and len(fake.tasks) == 1):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    (task,) = fake.live()
    assert fake.buckets_at_delete == [] and len(storage.bucket_names()) == 1, stderr
    while not fake.is_listed_yet(task):
        time.sleep(0.2)
    stopped = user.qimg("stop", "--purge", "lost")
    assert stopped.returncode == 0, stopped.stderr
    assert fake.tasks == {} and len(fake.buckets_at_delete) == 1, stopped.stderr
    (at_delete,) = fake.buckets_at_delete
    assert at_delete and at_delete[0].startswith("qimg-lost-in-"), "a bucket was deleted under its task"
    assert storage.bucket_names() == []  # then deleted, the task being gone


def test_sigterm_during_fetch_exits_143_and_leaves_no_partial_file(
    fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    bucket = "qimg-far-out-0123abcd"
    storage.client.create_bucket(Bucket=bucket)
    storage.put(bucket, "big.bin", os.urandom(100 * 1000 * 1000))
    target = tmp_path / "fetched"
    process = user.background("fetch", bucket, str(target))
    deadline = time.monotonic() + 120  # a guard against a hang, not a measure
    while not (target.exists() and any(target.iterdir())):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert list(target.iterdir()) == []
    storage.reset()
