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
- A backend without buckets (`registry`'s STORAGE: the local engine) refuses every data option and
  command, in one line.

This room holds what qimg plans and knows, with nothing moved: the options checked (and the storage
asked once that it answers), the launch's buckets named (`DataPlan`), `DataRecord` and the pending
marks. The bytes move in `bucket_io`.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qimg.errors import UsageError
from qimg.files import atomic_write, read_regular
from qimg.launcher import buckets, records
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import STORAGE, Backend, TaskRequest
from qimg.launcher.buckets import INPUTS, RESULTS, Upload
from qimg.state import state_dir

WORKDIR = "/job"  # DOCKER_WORKDIR: set explicitly, the platform's default is not documented
_PATH = re.compile(r"/[^\x00-\x1f\x7f]{0,4095}")


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
            left_out=inputs_left_out([name for name, _ in self.uploads]),
        )  # fmt: skip

    @property
    def buckets(self) -> list[str]:
        return [name for name in (self.inputs_bucket, self.results_bucket) if name]


def inputs_left_out(names: list[str]) -> str:
    """The regex that keeps the uploaded folders out of snapshots and results: they are in the inputs
    bucket already. How Qarnot writes the paths it matches is not documented: relative to the working
    directory is the likely form, "./NAME/..." and "/job/NAME/..." match too ("" without uploads)."""
    if not names:
        return ""
    folders = "|".join(re.escape(name) for name in names)
    return rf"^(?:\./|{re.escape(WORKDIR)}/)?(?:{folders})(?:/.*)?$"


def check_options(
    uploads: tuple[Path, ...], results: Path | None, snapshot_seconds: int, backend: str
) -> CheckedData | None:
    """--upload, --results and --snapshot-every checked for the backend named `backend`, every
    directory walked; UsageError otherwise."""
    values = {"--upload": uploads, "--results": results, "--snapshot-every": snapshot_seconds}
    given = [option for option, value in values.items() if value]
    if not given:
        return None
    registry.check(backend, STORAGE, given[0])  # the first one given names the refusal
    if snapshot_seconds and results is None:
        raise UsageError("--snapshot-every snapshots into the results bucket: give --results DIR too")
    walked: dict[str, Upload] = {}
    for directory in uploads:
        name = directory.resolve().name  # absolute already (typed_path): `..` and `.` named
        if name in walked:
            raise UsageError(
                f"--upload {directory}: another --upload is also named {name!r} (each lands in "
                f"{WORKDIR}/NAME): rename one"
            )
        if not name:
            raise UsageError(f"--upload {directory}: give a directory with a name, not the root")
        walked[name] = buckets.walk_upload("--upload", directory, name)
    target = buckets.check_target("--results", results, reusable=False) if results is not None else None
    return CheckedData(tuple(walked.items()), target, snapshot_seconds)


def check_storage(backend: Backend) -> None:
    """Before anything is created: the backend has bucket storage, and it answers."""
    registry.require(backend, STORAGE, "--upload/--results").buckets()


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


# A data record holds two bucket names and a path: what is larger is not one.
_RECORD_LIMIT = 1 << 16


def _data_dir() -> Path:
    return state_dir() / "data"


def load(name: str) -> DataRecord | None:
    """The record of task `name`; None when there is none, or when it is unreadable (then results
    have nowhere known to go: they stay in their bucket, marked pending)."""
    path = _data_dir() / f"{records.check_task_name(name)}.json"
    try:
        record = DataRecord.from_dict(json.loads(read_regular(path, _RECORD_LIMIT).decode("utf-8")))
    except (OSError, ValueError, UnicodeDecodeError, UsageError):
        return None
    return record if record.name == name else None


def save(record: DataRecord) -> None:
    atomic_write(_data_dir() / f"{record.name}.json", json.dumps(record.as_dict()) + "\n")


def forget(name: str) -> None:
    with contextlib.suppress(OSError):
        (_data_dir() / f"{records.check_task_name(name)}.json").unlink()


def _pending_path(bucket: str) -> Path:
    if buckets.parse_bucket(bucket) is None:
        raise ValueError(f"not a qimg bucket: {bucket}")
    return _data_dir() / "pending" / bucket


def is_pending(bucket: str) -> bool:
    """True while the bucket holds results that were asked for at a stop and not downloaded since."""
    return buckets.parse_bucket(bucket) is not None and _pending_path(bucket).exists()


def mark_pending(bucket: str, pending: bool) -> None:
    if pending:
        atomic_write(_pending_path(bucket), "")
    else:
        _pending_path(bucket).unlink(missing_ok=True)
