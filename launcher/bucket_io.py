"""What qimg does through a backend's buckets (its `Storage`), the bytes moved and the waits around
them: inputs staged before a task starts, results asked for, waited for and downloaded before it is
deleted (never lost: see `qimg.launcher.data`, which holds what qimg plans and knows), snapshots on
demand, fetch, `ls --buckets` and `stop --purge`.

Progress notes (a transfer done) go to the caller's `note`; what goes wrong without ending the
command (results left in their bucket, a bucket kept or not deleted) is a warning (`qimg.notices`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from qimg.errors import BackendError, Interrupted, QimgError, ResultsUploading, TaskNotFound, UsageError
from qimg.files import user_path
from qimg.launcher import buckets, names, records, signals
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import ENDED_STATES, EXECUTING, STORAGE, Backend, BucketView, Storage
from qimg.launcher.buckets import INPUTS, RESULTS
from qimg.launcher.data import WORKDIR, DataPlan, DataRecord, forget, is_pending, load, mark_pending, save
from qimg.notices import warn

SNAPSHOT_TIMEOUT = 600.0  # seconds for Qarnot to upload the working directory
# Seconds, in all, for the results of a task being stopped: the snapshot, the abort and the upload
# that follows it. No request starts after that; one under way has its own bound (REQUEST_TIMEOUT).
RESULTS_WAIT = 600.0
RESULTS_POLL = 0.5  # seconds between looks, at least; the backend's request budget may ask for more
ERROR_PAUSE = 8.0  # seconds at most between looks that fail (a read that fails is tried again)
FINAL_STATES = frozenset({"Cancelled", "Success", "Failure"})  # after UploadingResults: all is there
# Between execution and the end, the task moves its results: deleting it then could lose them.
UPLOADING_STATES = frozenset({"PendingCancel", "UploadingResults", "DownloadingResults"})

# Progress of a transfer: (what, bytes done, bytes in all). Called from the transfer's threads.
Progress = Callable[[str, int, int], None]
Note = Callable[[str], None]  # a progress note: what was moved


def _no_progress(_what: str, _done: int, _total: int) -> None:
    return


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
    store = registry.require(backend, STORAGE, "--upload/--results")
    save(DataRecord(task, plan.inputs_bucket, plan.results_bucket, plan.results_dir))
    for name in plan.buckets:
        store.create_bucket(name)
    if not plan.uploads:
        return
    total = sum(upload.size for _, upload in plan.uploads)
    meter = _Meter(progress, f"uploading to {plan.inputs_bucket}", total)
    for _, upload in plan.uploads:
        for source, key in upload.entries:
            if source is None:
                store.upload(plan.inputs_bucket, key, None, meter.add)
                continue
            with buckets.open_entry(upload, source) as handle:
                store.upload(plan.inputs_bucket, key, handle, meter.add)
    meter.finish()
    files = sum(1 for _, upload in plan.uploads for source, _ in upload.entries if source is not None)
    where = ", ".join(f"{WORKDIR}/{name}" for name, _ in plan.uploads)
    note(f"uploaded {files} files ({_size(total)}) to {plan.inputs_bucket}: the task sees them in {where}")


def end_of_launch(
    backend: Backend, plan: DataPlan, task: str, task_id: str, note: Note, progress: Progress | None
) -> None:
    """Before the launch's tasks are stopped: the results first. Buckets that no task got (the launch
    failed before its task existed) are deleted. Raises only what the stop that follows must hear of:
    ResultsUploading (the task must not be deleted now) and Interrupted (a signal during the results:
    the task is stopped all the same, then the signal ends qimg)."""
    try:
        store = registry.require(backend, STORAGE, "--upload/--results")
        if not task_id:
            _discard(store, plan, task)
            return
        if plan.results_bucket:
            record = DataRecord(task, plan.inputs_bucket, plan.results_bucket, plan.results_dir)
            collect(backend, store, task_id, record, note, progress)
        note(f"buckets {' and '.join(plan.buckets)} kept: `qimg stop --purge {task}` deletes them")
    except (ResultsUploading, Interrupted):
        raise
    except (QimgError, OSError) as error:
        warn(f"the data of {task}: {error}")


def _discard(store: Storage, plan: DataPlan, task: str) -> None:
    with signals.ignored():
        deleted = []
        for name in plan.buckets:
            try:
                store.delete_bucket(name)
                deleted.append(name)
            except QimgError as error:
                warn(f"could not delete bucket {name}: {error} (`qimg stop --purge {task}` retries)")
        if deleted == plan.buckets:
            forget(task)


def collect(
    backend: Backend, store: Storage, task_id: str, record: DataRecord, note: Note, progress: Progress | None
) -> bool:
    """The results of a task about to be deleted: asked for, waited for, then downloaded into the
    record's directory. True when they all came; otherwise the bucket is marked pending and a warning
    says how to fetch it. Raises ResultsUploading when the task is still uploading them (it must not
    be deleted now), and Interrupted after a signal (the caller still stops the task, then exits)."""
    complete = False
    ending: QimgError | None = None
    try:
        with signals.as_errors():
            _ask_for_results(backend, store, task_id)
            if record.results_dir is not None:
                files, size = download(store, record.results, record.results_dir, progress)
                note(f"results: {files} files ({_size(size)}) from {record.results} in {record.results_dir}")
                complete = True
    except (QimgError, OSError) as error:
        if isinstance(error, ResultsUploading | Interrupted):
            ending = error
        by_signal = isinstance(error, Interrupted) or (
            isinstance(error, ResultsUploading) and error.interrupted is not None
        )
        warn(f"results of {record.name} not downloaded: {'interrupted' if by_signal else error}")
    with contextlib.suppress(OSError):  # a read-only state directory: the warning below says it all the same
        mark_pending(record.results, not complete)
    if not complete:
        warn(f"they stay in bucket {record.results}: `qimg fetch {record.results} DIR` downloads them")
    if ending is not None:
        raise ending
    return complete


def _ask_for_results(backend: Backend, store: Storage, task_id: str) -> None:
    """Make the results bucket hold the task's last working directory: a snapshot while it runs, then
    its cancellation (which uploads them too), then wait until the upload is over, all within
    RESULTS_WAIT. The looks follow the backend's request budget, and one that fails is tried again; a
    task still uploading at the end raises ResultsUploading."""
    deadline = time.monotonic() + RESULTS_WAIT
    state = ""  # as last seen
    try:
        try:
            state = backend.view(task_id).state
        except BackendError as error:  # not known: the abort is asked for all the same
            warn(f"reading the task before stopping it: {error}")
        if state == EXECUTING:
            try:
                store.snapshot(task_id, min(SNAPSHOT_TIMEOUT, max(0.0, deadline - time.monotonic())))
            except BackendError as error:
                warn(f"snapshot before stopping failed ({error}): the cancellation uploads the results")
        if state not in ENDED_STATES:
            try:
                store.abort(task_id)
                state = "PendingCancel"  # accepted: cancelling, then uploading, until a look says more
            except BackendError as error:  # it may have ended meanwhile: the wait below tells
                warn(str(error))
        state = _wait_for_the_end(backend, task_id, deadline, state)
    except TaskNotFound:
        return  # deleted meanwhile: what its bucket holds is all there is
    if state in UPLOADING_STATES:
        raise ResultsUploading(
            f"the task is still {state} after {RESULTS_WAIT:.0f} s: not deleted while it uploads its results"
        )
    if state not in FINAL_STATES:
        raise BackendError(f"the task is {state or 'unreadable'} after {RESULTS_WAIT:.0f} s")


def _wait_for_the_end(backend: Backend, task_id: str, deadline: float, state: str) -> str:
    """Look at the task until it ends (or the deadline): paced by the backend's request budget, a
    failed look tried again after a longer pause. Returns its state as last seen; a signal while it
    uploads raises ResultsUploading (with the signal): the task must not be deleted then either."""
    pause = RESULTS_POLL
    try:
        while state not in FINAL_STATES:
            now = time.monotonic()
            wake = max(now + pause, backend.poll_not_before())
            if wake >= deadline:
                break
            time.sleep(wake - now)
            try:
                state = backend.view(task_id).state
                pause = RESULTS_POLL
            except BackendError:  # a transient failure (5xx, a dropped connection): the next look may work
                pause = min(pause * 2, ERROR_PAUSE)
    except Interrupted as interruption:
        if state in UPLOADING_STATES:
            raise ResultsUploading(
                f"interrupted while the task is {state}: not deleted while it uploads its results",
                interruption,
            ) from None
        raise
    return state


def results_first(note: Note, progress: Progress | None) -> Callable[[Backend, str, str], None]:
    """For `qimg stop`: before each task is deleted, its results, if it has a results bucket. A task
    launched elsewhere has no known directory: its results are asked for and left pending."""

    def before(backend: Backend, task: str, task_id: str) -> None:
        if not registry.can(backend.name, STORAGE):
            return  # no buckets: no results
        store = registry.require(backend, STORAGE, "saving results")
        try:
            view = backend.view(task_id)
            bucket = view.result_bucket
            # PendingDelete: deleted already (it is listed for a while); nothing can be asked of it.
            if view.state == "PendingDelete" or buckets.parse_bucket(bucket) is None:
                return
            record = load(task)
            if record is None or record.results != bucket:
                record = DataRecord(task, results=bucket)
            collect(backend, store, task_id, record, note, progress)
        except TaskNotFound:
            return
        except (ResultsUploading, Interrupted):
            raise  # the stop hears of it: not deleted now, or stopped and then ended by the signal
        except (QimgError, OSError) as error:  # the stop goes on: a task left running would bill
            warn(f"could not save the results of {task} first: {error}")

    return before


# --- the commands -------------------------------------------------------------------------------


def snapshot(task: str, backend: str) -> str:
    """`qimg snapshot NAME`: the task's working directory uploaded to its results bucket, now."""
    registry.check(backend, STORAGE, "qimg snapshot")
    found = names.resolve(task, backend)
    store = registry.require(found.backend, STORAGE, "qimg snapshot")
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


def _default_target(task: str) -> Path:
    """./TASK-results, made absolute as the paths the user types are (`qimg.files.user_path`)."""
    try:
        return Path(user_path(f"{task}-results"))
    except ValueError as error:
        raise UsageError(f"fetch: {error}") from None


def fetch(name: str, target: Path | None, backend: str, progress: Progress | None) -> Fetched:
    """`qimg fetch NAME [DIR]`: a results bucket (of task NAME, or the bucket NAME) downloaded into DIR,
    by default the task's --results directory, else ./TASK-results."""
    registry.check(backend, STORAGE, "qimg fetch")
    parsed = buckets.parse_bucket(name)
    if parsed is not None and parsed.kind != RESULTS:
        raise UsageError(f"{name} holds a task's inputs: fetch takes a task name or a results bucket")
    task = parsed.task if parsed else records.check_task_name(name)
    record = load(task)
    recorded = record.results_dir if record and (parsed is None or record.results == name) else None
    chosen = target or recorded or _default_target(task)  # the first two are absolute already
    checked = buckets.check_target("DIR", chosen, reusable=chosen == recorded)
    _, store = _open_storage(backend, "qimg fetch")
    bucket = name if parsed else (record.results if record and record.results else _only_results(store, task))
    # A signal (Interrupted, from cli.main) ends the download through its clean-up: no partial file stays.
    files, size = download(store, bucket, checked, progress)
    mark_pending(bucket, False)
    if record is None:  # a bucket of a task launched elsewhere: later fetches go to the same place
        save(DataRecord(task, results=bucket, results_dir=checked))
    return Fetched(bucket, checked, files, size)


def _only_results(store: Storage, task: str) -> str:
    found: list[str] = [
        view.name for view in _qimg_buckets(store) if _bucket_parts(view.name) == (task, RESULTS)
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TaskNotFound(f"no results bucket of a task named {task}: `qimg ls --buckets` lists them")
    raise UsageError(
        f"task {task} has several results buckets: name one: qimg fetch BUCKET ({', '.join(found)})"
    )


# --- the buckets qimg made ----------------------------------------------------------------------


def _open_storage(backend: str, what: str) -> tuple[Backend, Storage]:
    """The backend named `backend`, opened, and its storage; the one-line refusal, before anything is
    opened, when it has none."""
    registry.check(backend, STORAGE, what)
    opened = registry.open_backend(backend)
    return opened, registry.require(opened, STORAGE, what)


def _bucket_parts(bucket: str) -> tuple[str, str] | None:
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


def list_buckets(backend: str) -> list[BucketInfo]:
    """`qimg ls --buckets`: the buckets qimg made (their names say so) on the backend named `backend`,
    oldest first."""
    _, store = _open_storage(backend, "--buckets")
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


def purge(
    task: str | None, backend: str, opened: Backend | None = None
) -> tuple[list[str], list[str], list[str]]:
    """`qimg stop --purge`: delete the buckets of task `task` (of every task: None) on the backend
    named `backend`. Kept, with a warning: the buckets of a task that is running, and results not
    downloaded since their task stopped. A bucket that cannot be deleted does not keep the others:
    each is tried. Returns (deleted, kept, failures), a failure being "BUCKET: why". `opened`: the
    backend the command has opened already (its stop), else it is opened here."""
    if opened is None:
        opened, store = _open_storage(backend, "--purge")
    else:
        store = registry.require(opened, STORAGE, "--purge")
    running = {view.name for view in opened.tasks() if not view.ended}
    deleted, kept, failures = [], [], []
    for view in _qimg_buckets(store):
        parsed = buckets.parse_bucket(view.name)
        assert parsed is not None  # filtered above
        if task is not None and parsed.task != task:
            continue
        if parsed.task in running:
            warn(f"kept {view.name}: task {parsed.task} is running")
            kept.append(view.name)
        elif is_pending(view.name):
            warn(f"kept {view.name}: its results were never downloaded: `qimg fetch {view.name} DIR` first")
            kept.append(view.name)
        else:
            try:
                store.delete_bucket(view.name)
            except QimgError as error:
                failures.append(f"{view.name}: {error}")
                continue
            deleted.append(view.name)
    for name in {parts[0] for parts in map(_bucket_parts, deleted) if parts}:
        record = load(name)
        if record is not None and not {record.inputs, record.results} - {"", *deleted}:
            forget(name)
    return deleted, kept, failures
