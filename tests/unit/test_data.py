"""What qimg remembers of a task's data is read back as untrusted input; the progress bars show only
on a terminal."""

from __future__ import annotations

import io
import json
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from rich.console import Console

from qimg import notices
from qimg.display.data import TransferBars
from qimg.errors import BackendError, Interrupted, TaskNotFound, UsageError
from qimg.launcher import bucket_io, data, tasks
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import EXECUTING, BucketView, ObjectView, TaskRequest, TaskView
from qimg.launcher.data import DataRecord

GOOD = {
    "name": "t1", "inputs": "qimg-t1-in-0123abcd", "results": "qimg-t1-out-0123abcd",
    "results_dir": "/home/me/results",
}  # fmt: skip


@pytest.fixture(autouse=True)
def state(tmp_path: Path) -> Path:
    return tmp_path / "qimg" / "data"  # in the isolated state folder (tests/conftest.py)


def test_a_record_round_trips(state: Path) -> None:
    record = DataRecord.from_dict(GOOD)
    data.save(record)
    assert data.load("t1") == record and json.loads((state / "t1.json").read_text()) == GOOD


@pytest.mark.parametrize(
    "change",
    [
        {"name": "../t1"}, {"name": "T1"}, {"inputs": "qimg-t2-in-0123abcd"},
        {"inputs": "qimg-t1-out-0123abcd"}, {"results": "someone-elses"}, {"results": None},
        {"results_dir": "relative/dir"}, {"results_dir": "/tmp/new\nline"}, {"results_dir": 7},
    ],
    ids=repr,
)  # fmt: skip
def test_a_tampered_record_is_ignored(state: Path, change: dict[str, Any]) -> None:
    state.mkdir(parents=True)
    (state / "t1.json").write_text(json.dumps({**GOOD, **change}))
    assert data.load("t1") is None  # its results then stay in their bucket, marked pending


def test_a_record_under_another_name_is_ignored(state: Path) -> None:
    state.mkdir(parents=True)
    other = {"name": "t2", "inputs": "", "results": "qimg-t2-out-0123abcd", "results_dir": "/tmp/x"}
    (state / "t1.json").write_text(json.dumps(other))
    assert data.load("t1") is None


def test_pending_marks_only_qimg_buckets(state: Path) -> None:
    assert not data.is_pending("qimg-t1-out-0123abcd")
    data.mark_pending("qimg-t1-out-0123abcd", True)
    assert data.is_pending("qimg-t1-out-0123abcd") and (state / "pending" / "qimg-t1-out-0123abcd").exists()
    data.mark_pending("qimg-t1-out-0123abcd", False)
    assert not data.is_pending("qimg-t1-out-0123abcd")
    assert not data.is_pending("../../escape")
    with pytest.raises(ValueError, match="not a qimg bucket"):
        data.mark_pending("../../escape", True)


def test_transfer_bars_draw_on_a_terminal_only() -> None:
    for terminal in (True, False):
        out = io.StringIO()
        with TransferBars(Console(file=out, force_terminal=terminal, width=100)) as bars:
            bars("uploading to qimg-t1-in-0123abcd", 0, 2048)
            bars("uploading to qimg-t1-in-0123abcd", 1024, 2048)
            assert (bars.progress is not None) is terminal
            bars("uploading to qimg-t1-in-0123abcd", 2048, 2048)
            assert bars.progress is None and bars.bars == {}  # gone with its last transfer
        assert ("qimg-t1-in-0123abcd" in out.getvalue()) is terminal


class Memory:
    """A Qarnot backend and its storage in memory, recording what qimg asks of it, in order."""

    name = "qarnot"

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, bytes]] = {}
        self.views: dict[str, TaskView] = {}
        self.calls: list[tuple[str, str]] = []
        self.undeletable: set[str] = set()

    # Storage
    def buckets(self) -> list[BucketView]:
        return [BucketView(name) for name in self.stored]

    def create_bucket(self, name: str) -> None:
        self.calls.append(("create", name))
        self.stored[name] = {}

    def delete_bucket(self, name: str) -> None:
        self.calls.append(("delete", name))
        if name in self.undeletable:
            raise BackendError(f"deleting bucket {name}: InternalError")
        self.stored.pop(name, None)

    def objects(self, bucket: str) -> list[ObjectView]:
        return [ObjectView(key, len(content)) for key, content in self.stored[bucket].items()]

    def upload(self, bucket: str, key: str, source: BinaryIO | None, moved: Callable[[int], None]) -> None:
        content = source.read() if source else b""
        self.stored[bucket][key] = content
        moved(len(content))

    def download(self, bucket: str, key: str, target: BinaryIO, moved: Callable[[int], None]) -> None:
        self.calls.append(("download", key))
        target.write(self.stored[bucket][key])
        moved(len(self.stored[bucket][key]))

    def snapshot(self, task_id: str, timeout: float) -> None:
        self.calls.append(("snapshot", task_id))

    def abort(self, task_id: str) -> None:
        self.calls.append(("abort", task_id))
        self.views[task_id] = replace(self.views[task_id], state="Cancelled")

    # Backend
    def poll_not_before(self) -> float:
        return 0.0

    def view(self, task_id: str) -> TaskView:
        if task_id not in self.views:
            raise TaskNotFound(task_id)
        return self.views[task_id]

    def tasks(self) -> list[TaskView]:
        return list(self.views.values())

    def submit(self, request: TaskRequest) -> str:
        raise AssertionError("not used")

    def launched(self, launch_id: str) -> list[TaskView]:
        return []

    def output(self, task_id: str, instance: int | None = None, *, stderr: bool = False) -> str:
        return ""

    def stop(self, task_id: str) -> None:
        self.calls.append(("stop", task_id))
        self.views.pop(task_id, None)


def planned(tmp_path: Path, results: bool = True) -> data.DataPlan:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_text("a")
    checked = data.check_options((source,), tmp_path / "out" if results else None, 0, registry.DEFAULT)
    assert checked is not None
    return checked.planned("t1", "0123abcd0123abcd")


def test_a_launch_that_never_got_its_task_deletes_its_buckets(tmp_path: Path, state: Path) -> None:
    memory, plan, notes = Memory(), planned(tmp_path), list[str]()
    bucket_io.stage(memory, plan, "t1", notes.append, None)
    assert memory.stored == {"qimg-t1-in-0123abcd": {"src/sub/a.txt": b"a"}, "qimg-t1-out-0123abcd": {}}
    assert data.load("t1") == DataRecord(
        "t1", "qimg-t1-in-0123abcd", "qimg-t1-out-0123abcd", tmp_path / "out"
    )
    bucket_io.end_of_launch(memory, plan, "t1", "", notes.append, None)
    assert memory.stored == {} and data.load("t1") is None
    assert notes == ["uploaded 1 files (1 B) to qimg-t1-in-0123abcd: the task sees them in /job/src"]


def test_results_are_asked_for_and_downloaded_before_the_stop(tmp_path: Path) -> None:
    memory, plan, notes = Memory(), planned(tmp_path), list[str]()
    bucket_io.stage(memory, plan, "t1", notes.append, None)
    memory.views["id1"] = TaskView("id1", "t1", EXECUTING, 1, result_bucket=plan.results_bucket)
    memory.stored[plan.results_bucket] = {"src/sub/a.txt": b"a", "made.txt": b"made", "../evil": b"x"}
    with notices.to(notes.append):
        bucket_io.end_of_launch(memory, plan, "t1", "id1", notes.append, None)
    assert memory.calls[-4:] == [("snapshot", "id1"), ("abort", "id1"), ("download", "src/sub/a.txt"),
                                 ("download", "made.txt")]  # fmt: skip
    assert (tmp_path / "out" / "made.txt").read_text() == "made" and not (tmp_path / "evil").exists()
    assert data.is_pending(plan.results_bucket)  # the unsafe key: not all of it came down
    assert any(f"qimg fetch {plan.results_bucket} DIR" in line for line in notes)


REFUSED: dict[str, tuple[Callable[[Path], object], str]] = {
    "--upload": (lambda tmp: data.check_options((tmp,), tmp / "out", 60, registry.LOCAL), "--upload"),
    "--results": (lambda tmp: data.check_options((), tmp / "out", 0, registry.LOCAL), "--results"),
    "fetch": (lambda tmp: bucket_io.fetch("t1", None, registry.LOCAL, None), "qimg fetch"),
    "snapshot": (lambda _tmp: bucket_io.snapshot("t1", registry.LOCAL), "qimg snapshot"),
    "ls --buckets": (lambda _tmp: bucket_io.list_buckets(registry.LOCAL), "--buckets"),
    "purge": (lambda _tmp: bucket_io.purge(None, registry.LOCAL), "--purge"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_backend_without_buckets_refuses_data_in_one_line_before_opening_anything(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def opened(name: str) -> None:
        raise AssertionError(f"{name} opened")

    monkeypatch.setattr(registry, "open_backend", opened)
    call, what = REFUSED[case]
    with pytest.raises(UsageError) as refused:
        call(tmp_path)
    assert str(refused.value) == f"{what} is for Qarnot (buckets): the local engine has none (drop --local)"


def test_purge_keeps_a_running_tasks_buckets_and_results_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = Memory()
    monkeypatch.setattr(registry, "open_backend", lambda *_args: memory)
    for name in ("qimg-run-in-0000aaaa", "qimg-pend-out-0000bbbb", "qimg-done-out-0000cccc", "other"):
        memory.create_bucket(name)
    memory.views["id1"] = TaskView("id1", "run", EXECUTING, 1)
    data.mark_pending("qimg-pend-out-0000bbbb", True)
    notes: list[str] = []
    with notices.to(notes.append):
        purged = bucket_io.purge(None, registry.DEFAULT)
    assert purged == (
        ["qimg-done-out-0000cccc"],
        ["qimg-run-in-0000aaaa", "qimg-pend-out-0000bbbb"],
        [],
    )
    assert sorted(memory.stored) == ["other", "qimg-pend-out-0000bbbb", "qimg-run-in-0000aaaa"]
    assert notes == [
        "kept qimg-run-in-0000aaaa: task run is running",
        "kept qimg-pend-out-0000bbbb: its results were never downloaded: "
        "`qimg fetch qimg-pend-out-0000bbbb DIR` first",
    ]


def test_purge_deletes_every_bucket_it_can_and_reports_the_others_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """adversarial-3 F13: a bucket that cannot be deleted (moto answers 500 for keys `.` and `..`) does
    not keep the others."""
    memory = Memory()
    monkeypatch.setattr(registry, "open_backend", lambda *_args: memory)
    names = ["qimg-a-out-0000aaaa", "qimg-evil-out-0123abcd", "qimg-z-in-0000cccc", "qimg-evil-in-0123abcd"]
    for name in names:
        memory.create_bucket(name)
    memory.undeletable = {"qimg-evil-out-0123abcd", "qimg-evil-in-0123abcd"}
    with notices.to(list[str]().append):
        deleted, kept, failures = bucket_io.purge(None, registry.DEFAULT)
    assert (deleted, kept) == (["qimg-a-out-0000aaaa", "qimg-z-in-0000cccc"], [])
    assert failures == [
        "qimg-evil-out-0123abcd: deleting bucket qimg-evil-out-0123abcd: InternalError",
        "qimg-evil-in-0123abcd: deleting bucket qimg-evil-in-0123abcd: InternalError",
    ]
    assert sorted(memory.stored) == sorted(memory.undeletable)


class Uploading(Memory):
    """A task that, once aborted, uploads its results for `looks` looks at it, and whose reads fail
    every other time meanwhile. It checks that every look keeps to its request budget, and that it
    is never deleted while it uploads."""

    def __init__(self, looks: int, budget: float = 0.6) -> None:
        super().__init__()
        self.looks, self.budget, self.not_before, self.reads = looks, budget, 0.0, 0

    def poll_not_before(self) -> float:
        return self.not_before

    def abort(self, task_id: str) -> None:
        self.calls.append(("abort", task_id))
        self.views[task_id] = replace(self.views[task_id], state="UploadingResults")

    def view(self, task_id: str) -> TaskView:
        view = super().view(task_id)
        if view.state == "UploadingResults":  # the wait's looks
            assert time.monotonic() >= self.not_before, "a look before the request budget allows it"
            self.not_before = time.monotonic() + self.budget
            self.reads += 1
            if self.reads % 2:
                self.calls.append(("failed read", task_id))
                raise BackendError("reading the task: Error: 503 (after the SDK's retries)")
            self.looks -= 1
            if self.looks <= 0:
                self.views[task_id] = view = replace(view, state="Cancelled")
        return view

    def stop(self, task_id: str) -> None:
        assert self.views[task_id].state != "UploadingResults", "deleted while it uploads"
        super().stop(task_id)


def stop_all(memory: Memory, monkeypatch: pytest.MonkeyPatch, notes: list[str]) -> None:
    monkeypatch.setattr(registry, "open_backend", lambda *_args: memory)
    with notices.to(notes.append):
        tasks.stop(None, registry.DEFAULT, bucket_io.results_first(notes.append, None))


def test_the_wait_for_the_results_keeps_to_the_budget_and_rides_out_failed_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory, notes = Uploading(looks=3), list[str]()
    memory.views["id1"] = TaskView("id1", "t1", EXECUTING, 1, result_bucket="qimg-t1-out-0123abcd")
    memory.stored["qimg-t1-out-0123abcd"] = {"made.txt": b"made"}
    data.save(DataRecord("t1", results="qimg-t1-out-0123abcd", results_dir=tmp_path / "out"))
    stop_all(memory, monkeypatch, notes)
    assert ("failed read", "id1") in memory.calls and memory.calls[-1] == ("stop", "id1")
    assert (tmp_path / "out" / "made.txt").read_text() == "made", notes
    assert not data.is_pending("qimg-t1-out-0123abcd")


def test_a_task_still_uploading_at_the_end_of_the_wait_is_not_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bucket_io, "RESULTS_WAIT", 2.0)
    memory, notes = Uploading(looks=1000, budget=0.2), list[str]()
    memory.views["id1"] = TaskView("id1", "t1", EXECUTING, 1, result_bucket="qimg-t1-out-0123abcd")
    memory.stored["qimg-t1-out-0123abcd"] = {}
    with pytest.raises(BackendError, match="still UploadingResults after 2 s: not deleted while it uploads"):
        stop_all(memory, monkeypatch, notes)
    assert ("stop", "id1") not in memory.calls and data.is_pending("qimg-t1-out-0123abcd")


class InterruptedDownload(Memory):
    def download(self, bucket: str, key: str, target: BinaryIO, moved: Callable[[int], None]) -> None:
        target.write(b"half")
        raise Interrupted(signal.SIGTERM)


def test_a_signal_during_the_download_stops_the_task_then_ends_qimg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adversarial-3 F5: the signal was swallowed (exit 0); it ends qimg (143) once the task is stopped."""
    memory, notes = InterruptedDownload(), list[str]()
    memory.views["id1"] = TaskView("id1", "t1", EXECUTING, 1, result_bucket="qimg-t1-out-0123abcd")
    memory.stored["qimg-t1-out-0123abcd"] = {"big.bin": b"x" * 100}
    data.save(DataRecord("t1", results="qimg-t1-out-0123abcd", results_dir=tmp_path / "out"))
    with pytest.raises(Interrupted) as ended:
        stop_all(memory, monkeypatch, notes)
    assert ended.value.exit_code == 128 + signal.SIGTERM
    assert memory.calls[-1] == ("stop", "id1") and data.is_pending("qimg-t1-out-0123abcd")
    assert "results of t1 not downloaded: interrupted" in notes
    assert list((tmp_path / "out").iterdir()) == []  # no partial file left


class InterruptedWhileUploading(Uploading):
    def view(self, task_id: str) -> TaskView:
        view = super().view(task_id)
        if view.state == "UploadingResults" and self.reads >= 2:
            raise Interrupted(signal.SIGINT)
        return view


def test_a_signal_while_the_task_uploads_ends_qimg_without_deleting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory, notes = InterruptedWhileUploading(looks=1000, budget=0.0), list[str]()
    memory.views["id1"] = TaskView("id1", "t1", EXECUTING, 1, result_bucket="qimg-t1-out-0123abcd")
    memory.stored["qimg-t1-out-0123abcd"] = {}
    with pytest.raises(Interrupted) as ended:
        stop_all(memory, monkeypatch, notes)
    assert ended.value.exit_code == 128 + signal.SIGINT
    assert ("stop", "id1") not in memory.calls and data.is_pending("qimg-t1-out-0123abcd")
    assert "results of t1 not downloaded: interrupted" in notes
