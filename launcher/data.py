"""A task's data, through Qarnot's buckets: inputs uploaded before it starts, results downloaded before
it is deleted, snapshots on demand, fetch, and the clean-up of the buckets qimg made.

- The task's working directory is `WORKDIR` (its DOCKER_WORKDIR). Each `--upload DIR` lands there as
  `WORKDIR/<name of DIR>/`, through one inputs bucket; `--results DIR` gives the task a results bucket,
  which Qarnot fills with the working directory on a snapshot, when the task ends, and when it is
  cancelled (asked for at submission).
- Results are never lost: before qimg deletes a task that has a results bucket, it asks for a snapshot
  (while the task runs), aborts it (the cancellation uploads them too), waits until the upload is done,
  and downloads the bucket. A download that does not complete leaves the bucket marked as pending:
  `stop --purge` keeps it until `qimg fetch` brings it down.
- What qimg knows of a task's data lives in its state directory: `data/NAME.json` (the buckets of the
  latest launch of NAME, and where its results go) and `data/pending/BUCKET` (results not downloaded
  yet). Both are read back as untrusted input.
- The local engine has no buckets: every data option and command is refused there, in one line.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from qimg.errors import BackendError, Interrupted, QimgError, TaskNotFound, UsageError
from qimg.files import atomic_write
from qimg.launcher import buckets, records, signals, tasks
from qimg.launcher.backends.base import EXECUTING, Backend, BucketView, Storage, TaskRequest
from qimg.launcher.buckets import INPUTS, RESULTS, Upload
from qimg.state import state_dir

WORKDIR = "/job"  # DOCKER_WORKDIR: set explicitly, the platform's default is not documented
SNAPSHOT_TIMEOUT = 600.0  # seconds for Qarnot to upload the working directory
RESULTS_WAIT = 600.0  # seconds for an aborted task to finish uploading its results
RESULTS_POLL = 0.5
FINAL_STATES = frozenset({"Cancelled", "Success", "Failure"})  # after UploadingResults: all is there
_PATH = re.compile(r"/[^\x00-\x1f\x7f]{0,4095}")

# Progress of a transfer: (what, bytes done, bytes in all). Called from the transfer's threads.
Progress = Callable[[str, int, int], None]
Note = Callable[[str], None]


def _no_progress(_what: str, _done: int, _total: int) -> None:
    return


def storage_of(backend: Backend, what: str) -> Storage:
    if isinstance(backend, Storage):
        return backend
    raise UsageError(f"{what} uses Qarnot's buckets: the local engine has none (drop --local)")


# --- a launch's data, planned ---------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedData:
    """The data options, checked (nothing created yet)."""

    uploads: tuple[tuple[str, Upload], ...]  # (name under the working directory, what goes there)
    results_dir: Path | None
    snapshot_seconds: int

    def planned(self, task: str, launch_id: str) -> DataPlan:
        return DataPlan(
            self.uploads, self.results_dir, self.snapshot_seconds,
            buckets.bucket_name(task, INPUTS, launch_id) if self.uploads else "",
            buckets.bucket_name(task, RESULTS, launch_id) if self.results_dir else "",
        )  # fmt: skip


@dataclass(frozen=True)
class DataPlan(CheckedData):
    inputs_bucket: str
    results_bucket: str

    def applied(self, request: TaskRequest) -> TaskRequest:
        """The task's request with its working directory and buckets."""
        return replace(
            request, constants={**request.constants, "DOCKER_WORKDIR": WORKDIR},
            resource_buckets=(self.inputs_bucket,) if self.inputs_bucket else (),
            result_bucket=self.results_bucket, snapshot_seconds=self.snapshot_seconds,
        )  # fmt: skip

    @property
    def buckets(self) -> list[str]:
        return [name for name in (self.inputs_bucket, self.results_bucket) if name]


def check_options(
    uploads: tuple[Path, ...], results: Path | None, snapshot_seconds: int, *, local: bool
) -> CheckedData | None:
    """--upload, --results and --snapshot-every checked, every directory walked; UsageError otherwise."""
    if not (uploads or results or snapshot_seconds):
        return None
    if local:
        raise UsageError(
            "--upload, --results and --snapshot-every use Qarnot's buckets: the local engine has none "
            "(drop --local)"
        )
    if snapshot_seconds and results is None:
        raise UsageError("--snapshot-every snapshots into the results bucket: give --results DIR too")
    walked: dict[str, Upload] = {}
    for directory in uploads:
        name = directory.expanduser().absolute().resolve().name
        if name in walked:
            raise UsageError(
                f"--upload {directory}: another --upload is also named {name!r} (each lands in "
                f"{WORKDIR}/NAME): rename one"
            )
        if not name:
            raise UsageError(f"--upload {directory}: give a directory with a name, not the root")
        walked[name] = buckets.walk_upload("--upload", directory.expanduser(), name)
    target = buckets.check_target("--results", results, reusable=False) if results is not None else None
    return CheckedData(tuple(walked.items()), target, snapshot_seconds)


def check_storage(backend: Backend) -> None:
    """Before anything is created: the backend has bucket storage, and it answers."""
    storage_of(backend, "--upload/--results").buckets()


# --- what this machine remembers ------------------------------------------------------------------


@dataclass(frozen=True)
class DataRecord:
    """The buckets of the latest launch of task `name`, and where its results go."""

    name: str
    inputs: str = ""
    results: str = ""
    results_dir: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "inputs": self.inputs, "results": self.results,
            "results_dir": str(self.results_dir) if self.results_dir else None,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> DataRecord:
        """Read back from disk: every field checked; ValueError says which is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        name = data.get("name")
        records.check_task_name(name if isinstance(name, str) else "")
        for field, kind in (("inputs", INPUTS), ("results", RESULTS)):
            value = data.get(field)
            parsed = buckets.parse_bucket(value) if isinstance(value, str) else None
            if value != "" and (parsed is None or parsed.task != name or parsed.kind != kind):
                raise ValueError(field)
        directory = data.get("results_dir")
        if directory is not None and not (isinstance(directory, str) and _PATH.fullmatch(directory)):
            raise ValueError("results_dir")
        return cls(str(name), data["inputs"], data["results"], Path(directory) if directory else None)


def _data_dir() -> Path:
    return state_dir() / "data"


def load(name: str) -> DataRecord | None:
    """The record of task `name`; None when there is none, or when it is unreadable (then results
    have nowhere known to go: they stay in their bucket, marked pending)."""
    path = _data_dir() / f"{records.check_task_name(name)}.json"
    try:
        record = DataRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, UnicodeDecodeError, UsageError):
        return None
    return record if record.name == name else None


def save(record: DataRecord) -> None:
    atomic_write(_data_dir() / f"{record.name}.json", json.dumps(record.as_dict()) + "\n")


def _forget(name: str) -> None:
    with contextlib.suppress(OSError):
        (_data_dir() / f"{records.check_task_name(name)}.json").unlink()


def _pending_path(bucket: str) -> Path:
    if buckets.parse_bucket(bucket) is None:
        raise ValueError(f"not a qimg bucket: {bucket}")
    return _data_dir() / "pending" / bucket


def is_pending(bucket: str) -> bool:
    """True while the bucket holds results that were asked for at a stop and not downloaded since."""
    return buckets.parse_bucket(bucket) is not None and _pending_path(bucket).exists()


def _mark_pending(bucket: str, pending: bool) -> None:
    if pending:
        atomic_write(_pending_path(bucket), "")
    else:
        _pending_path(bucket).unlink(missing_ok=True)


# --- moving bytes ---------------------------------------------------------------------------------


class _Meter:
    """Bytes moved by one transfer, added up from the transfer's threads, reported to `progress`."""

    def __init__(self, progress: Progress | None, what: str, total: int) -> None:
        self.progress, self.what, self.total = progress or _no_progress, what, total
        self.done = 0
        self.lock = threading.Lock()
        self.progress(what, 0, total)

    def add(self, count: int) -> None:
        with self.lock:
            self.done = min(self.done + count, self.total)
            self.progress(self.what, self.done, self.total)

    def finish(self) -> None:
        with self.lock:
            self.progress(self.what, self.total, self.total)


def _size(count: int) -> str:
    amount = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


def download(store: Storage, bucket: str, target: Path, progress: Progress | None) -> tuple[int, int]:
    """Every object of the bucket into `target` (created if need be), each key checked to stay inside
    it; files of the same names are replaced, nothing else is touched. Returns (files, bytes); raises
    BackendError, after trying every object, when any could not be written."""
    listed = store.objects(bucket)
    total = sum(item.size for item in listed)
    target.mkdir(parents=True, exist_ok=True)
    meter = _Meter(progress, f"downloading {bucket}", total)
    problems = []
    for item in listed:
        key = item.key

        def fill(handle: BinaryIO, key: str = key) -> None:
            store.download(bucket, key, handle, meter.add)

        try:
            buckets.write_into(target, key, fill)
        except (ValueError, OSError) as error:
            problems.append(str(error))
    meter.finish()
    if problems:
        raise BackendError(
            f"{len(problems)} of the {len(listed)} objects of {bucket} were not written into {target}: "
            f"{problems[0]}"
        )
    return sum(1 for item in listed if not item.key.endswith("/")), total


# --- a launch -------------------------------------------------------------------------------------


def stage(backend: Backend, plan: DataPlan, task: str, note: Note, progress: Progress | None) -> None:
    """Before the task is submitted: its buckets created and its inputs uploaded. Whatever fails, the
    caller's way out (`end_of_launch` without a task) deletes them."""
    store = storage_of(backend, "--upload/--results")
    save(DataRecord(task, plan.inputs_bucket, plan.results_bucket, plan.results_dir))
    for name in plan.buckets:
        store.create_bucket(name)
    if not plan.uploads:
        return
    total = sum(upload.size for _, upload in plan.uploads)
    meter = _Meter(progress, f"uploading to {plan.inputs_bucket}", total)
    for _, upload in plan.uploads:
        for source, key in upload.entries:
            store.upload(plan.inputs_bucket, key, source, meter.add)
    meter.finish()
    files = sum(1 for _, upload in plan.uploads for source, _ in upload.entries if source is not None)
    where = ", ".join(f"{WORKDIR}/{name}" for name, _ in plan.uploads)
    note(f"uploaded {files} files ({_size(total)}) to {plan.inputs_bucket}: the task sees them in {where}")


def end_of_launch(
    backend: Backend, plan: DataPlan, task: str, task_id: str, note: Note, progress: Progress | None
) -> None:
    """Before the launch's tasks are stopped: the results first. Buckets that no task got (the launch
    failed before its task existed) are deleted. Raises nothing: the stop that follows must happen."""
    try:
        store = storage_of(backend, "--upload/--results")
        if not task_id:
            _discard(store, plan, task, note)
            return
        if plan.results_bucket:
            record = DataRecord(task, plan.inputs_bucket, plan.results_bucket, plan.results_dir)
            collect(backend, store, task_id, record, note, progress)
        note(f"buckets {' and '.join(plan.buckets)} kept: `qimg stop --purge {task}` deletes them")
    except (QimgError, OSError) as error:
        note(f"the data of {task}: {error}")


def _discard(store: Storage, plan: DataPlan, task: str, note: Note) -> None:
    with signals.ignored():
        deleted = []
        for name in plan.buckets:
            try:
                store.delete_bucket(name)
                deleted.append(name)
            except QimgError as error:
                note(f"could not delete bucket {name}: {error} (`qimg stop --purge {task}` retries)")
        if deleted == plan.buckets:
            _forget(task)


def collect(
    backend: Backend, store: Storage, task_id: str, record: DataRecord, note: Note, progress: Progress | None
) -> bool:
    """The results of a task about to be deleted: asked for, waited for, then downloaded into the
    record's directory. True when they all came; otherwise the bucket is marked pending and the note
    says how to fetch it. A signal ends the wait or the download (the caller still stops the task)."""
    complete = False
    try:
        with signals.as_errors():
            _ask_for_results(backend, store, task_id, note)
            if record.results_dir is not None:
                files, size = download(store, record.results, record.results_dir, progress)
                note(f"results: {files} files ({_size(size)}) from {record.results} in {record.results_dir}")
                complete = True
    except (QimgError, OSError) as error:
        what = "interrupted" if isinstance(error, Interrupted) else str(error)
        note(f"results of {record.name} not downloaded: {what}")
    with contextlib.suppress(OSError):  # a read-only state directory: the note below says it all the same
        _mark_pending(record.results, not complete)
    if not complete:
        note(f"they stay in bucket {record.results}: `qimg fetch {record.results} DIR` downloads them")
    return complete


def _ask_for_results(backend: Backend, store: Storage, task_id: str, note: Note) -> None:
    """Make the results bucket hold the task's last working directory: a snapshot while it runs, then
    its cancellation (which uploads them too), then wait until the upload is over."""
    try:
        view = backend.view(task_id)
        if view.state == EXECUTING:
            try:
                store.snapshot(task_id, SNAPSHOT_TIMEOUT)
            except BackendError as error:
                note(f"snapshot before stopping failed ({error}): the cancellation uploads the results")
        if not view.ended:
            try:
                store.abort(task_id)
            except BackendError as error:  # it may have ended meanwhile: the wait below tells
                note(f"aborting the task: {error}")
        deadline = time.monotonic() + RESULTS_WAIT
        while (view := backend.view(task_id)).state not in FINAL_STATES:
            if time.monotonic() >= deadline:
                raise BackendError(f"the task is still {view.state} after {RESULTS_WAIT:.0f} s")
            time.sleep(RESULTS_POLL)
    except TaskNotFound:
        return  # deleted meanwhile: what its bucket holds is all there is


def results_first(note: Note, progress: Progress | None) -> Callable[[Backend, str, str], None]:
    """For `qimg stop`: before each task is deleted, its results, if it has a results bucket. A task
    launched elsewhere has no known directory: its results are asked for and left pending."""

    def before(backend: Backend, task: str, task_id: str) -> None:
        if not isinstance(backend, Storage):
            return
        try:
            view = backend.view(task_id)
            bucket = view.result_bucket
            # PendingDelete: deleted already (it is listed for a while); nothing can be asked of it.
            if view.state == "PendingDelete" or buckets.parse_bucket(bucket) is None:
                return
            record = load(task)
            if record is None or record.results != bucket:
                record = DataRecord(task, results=bucket)
            collect(backend, backend, task_id, record, note, progress)
        except TaskNotFound:
            return
        except (QimgError, OSError) as error:  # the stop goes on: a task left running would bill
            note(f"could not save the results of {task} first: {error}")

    return before


# --- the commands -------------------------------------------------------------------------------


def snapshot(task: str, local: bool) -> str:
    """`qimg snapshot NAME`: the task's working directory uploaded to its results bucket, now."""
    if local:
        raise UsageError("snapshot uploads to a Qarnot bucket: the local engine has none (drop --local)")
    found = tasks.resolve(task, local)
    store = storage_of(found.backend, "snapshot")
    view = found.backend.view(found.task_id)
    if not view.result_bucket:
        raise UsageError(f"task {task} has no results bucket: launch it with --results DIR to snapshot it")
    if view.state != EXECUTING:
        raise QimgError(f"task {task} is {view.state}: only a running task can be snapshot")
    store.snapshot(found.task_id, SNAPSHOT_TIMEOUT)
    return view.result_bucket


@dataclass(frozen=True)
class Fetched:
    bucket: str
    target: Path
    files: int
    size: int


def fetch(name: str, target: Path | None, local: bool, progress: Progress | None) -> Fetched:
    """`qimg fetch NAME [DIR]`: a results bucket (of task NAME, or the bucket NAME) downloaded into DIR,
    by default the task's --results directory, else ./TASK-results."""
    if local:
        raise UsageError("fetch downloads a Qarnot bucket: the local engine has none (drop --local)")
    parsed = buckets.parse_bucket(name)
    if parsed is not None and parsed.kind != RESULTS:
        raise UsageError(f"{name} holds a task's inputs: fetch takes a task name or a results bucket")
    task = parsed.task if parsed else records.check_task_name(name)
    record = load(task)
    recorded = record.results_dir if record and (parsed is None or record.results == name) else None
    chosen = (target or recorded or Path(f"{task}-results")).expanduser().absolute()
    checked = buckets.check_target("DIR", chosen, reusable=chosen == recorded)
    store = storage_of(tasks.open_backend("qarnot"), "fetch")
    bucket = name if parsed else (record.results if record and record.results else _only_results(store, task))
    files, size = download(store, bucket, checked, progress)
    _mark_pending(bucket, False)
    if record is None:  # a bucket of a task launched elsewhere: later fetches go to the same place
        save(DataRecord(task, results=bucket, results_dir=checked))
    return Fetched(bucket, checked, files, size)


def _only_results(store: Storage, task: str) -> str:
    found: list[str] = [view.name for view in _qimg_buckets(store) if _parts(view.name) == (task, RESULTS)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TaskNotFound(f"no results bucket of a task named {task}: `qimg ls --buckets` lists them")
    raise UsageError(
        f"task {task} has several results buckets: name one: qimg fetch BUCKET ({', '.join(found)})"
    )


def _parts(bucket: str) -> tuple[str, str] | None:
    parsed = buckets.parse_bucket(bucket)
    return (parsed.task, parsed.kind) if parsed else None


def _qimg_buckets(store: Storage) -> list[BucketView]:
    return [view for view in store.buckets() if buckets.parse_bucket(view.name) is not None]


@dataclass(frozen=True)
class BucketInfo:
    name: str
    task: str
    kind: str  # "inputs" or "results"
    objects: int
    size: int
    created: datetime | None
    pending: bool  # results not downloaded since the task stopped

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "task": self.task, "kind": self.kind, "objects": self.objects,
            "bytes": self.size, "created": self.created.isoformat() if self.created else None,
            "pending_download": self.pending,
        }  # fmt: skip


def list_buckets(local: bool) -> list[BucketInfo]:
    """`qimg ls --buckets`: the buckets qimg made (their names say so), oldest first."""
    if local:
        raise UsageError("--buckets lists Qarnot buckets: the local engine has none (drop --local)")
    store = storage_of(tasks.open_backend("qarnot"), "--buckets")
    found = []
    for view in _qimg_buckets(store):
        parsed = buckets.parse_bucket(view.name)
        assert parsed is not None  # filtered above
        listed = store.objects(view.name)
        found.append(BucketInfo(
            view.name, parsed.task, "inputs" if parsed.kind == INPUTS else "results", len(listed),
            sum(item.size for item in listed), view.created, is_pending(view.name),
        ))  # fmt: skip
    return sorted(found, key=lambda info: (info.created is None, info.created or datetime.min, info.name))


def purge(task: str | None, note: Note) -> tuple[list[str], list[str]]:
    """`qimg stop --purge`: delete the buckets of task `task` (of every task: None). Kept, and said:
    the buckets of a task that is running, and results not downloaded since their task stopped.
    Returns (deleted, kept)."""
    backend = tasks.open_backend("qarnot")
    store = storage_of(backend, "--purge")
    running = {view.name for view in backend.tasks() if not view.ended}
    deleted, kept = [], []
    for view in _qimg_buckets(store):
        parsed = buckets.parse_bucket(view.name)
        assert parsed is not None  # filtered above
        if task is not None and parsed.task != task:
            continue
        if parsed.task in running:
            note(f"kept {view.name}: task {parsed.task} is running")
            kept.append(view.name)
        elif is_pending(view.name):
            note(f"kept {view.name}: its results were never downloaded: `qimg fetch {view.name} DIR` first")
            kept.append(view.name)
        else:
            store.delete_bucket(view.name)
            deleted.append(view.name)
    for name in {parts[0] for parts in map(_parts, deleted) if parts}:
        record = load(name)
        if record is not None and not {record.inputs, record.results} - {"", *deleted}:
            _forget(name)
    return deleted, kept
