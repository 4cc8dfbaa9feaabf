"""Storage, once `FakeQarnot.attach_storage` gives it a real S3 emulator: buckets, working directories
and the snapshots that carry them to the result bucket.

`GET /settings` names the emulator (account.py), submission refuses buckets that do not exist (404, as
the SDK expects), each instance gets a working directory of its own at DOCKER_WORKDIR (a host
directory, fresh at every start, filled from the resource buckets), and the working directories go to
the result bucket on an instant snapshot (`POST /tasks/{uuid}/snapshot`, status at `GET
.../snapshot/{id}`), every `interval` of a periodic one, at the end (`end_task`), and on an abort when
the task asked for `uploadResultsOnCancellation`. Uploads take `upload_seconds`, during which a
snapshot is InProgress and an aborted task UploadingResults. Harsh readings of unknowns: a DELETE
uploads nothing; a restarted instance starts from the resources again; an instant snapshot of a task
that is not executing is refused (403); uploads add and replace objects and never delete any.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fakes.qarnot.model import ENDING_STATES, FakeTask, Instance
from tests.fakes.qarnot.replies import EMPTY, Answer, Reply, Request, api_date, json_reply, of_task

if TYPE_CHECKING:
    from tests.fakes.qarnot.server import FakeQarnot


def attach(fake: FakeQarnot, url: str) -> None:
    import boto3

    fake.storage_url = url
    fake.s3 = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="fake",
        aws_secret_access_key="fake",
    )  # fmt: skip
    fake.workdirs_root = Path(tempfile.mkdtemp(prefix="fake-qarnot-workdirs-"))


# --- buckets ---------------------------------------------------------------------------------------


def bucket_names(body: dict[str, Any]) -> list[str]:
    """The resource buckets of a task as the SDK sends them: advanced ones (objects), or plain names."""
    advanced = [str(item.get("bucketName")) for item in body.get("advancedResourceBuckets") or []]
    return advanced + [str(name) for name in body.get("resourceBuckets") or []]


def existing_buckets(fake: FakeQarnot) -> set[str]:
    return {b["Name"] for b in fake.s3.list_buckets()["Buckets"]}


def buckets_problem(fake: FakeQarnot, body: dict[str, Any]) -> Reply | None:
    """The refusal of a submission whose resource or result buckets do not exist, or None."""
    wanted = bucket_names(body) + ([str(body["resultBucket"])] if body.get("resultBucket") else [])
    if wanted and fake.s3 is None:
        return json_reply(400, {"message": "Bucket storage is not available"})
    existing = existing_buckets(fake) if wanted else set()
    missing = [name for name in wanted if name not in existing]
    if missing:
        return json_reply(404, {"message": f"Bucket not found: {missing[0]}"})
    return None


# --- working directories ---------------------------------------------------------------------------


def fresh_workdir(fake: FakeQarnot, task: FakeTask, instance: Instance) -> Path:
    """A new working directory for the instance, holding its resource buckets' files. Harsh
    reading of an unknown (the platform makes it, its owner is not documented): owned by root,
    0755, as a directory the engine creates for a container is; the files 0644."""
    assert fake.workdirs_root is not None
    drop_workdir(instance)
    root = Path(tempfile.mkdtemp(prefix=f"{task.uuid[:8]}-{instance.index}-", dir=fake.workdirs_root))
    for bucket in task.resource_buckets:
        for page in fake.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                parts = key.removesuffix("/").split("/")
                if key.startswith("/") or any(part in {"", ".", ".."} for part in parts):
                    continue  # the platform would not write outside the working directory either
                target = root.joinpath(*parts)
                if key.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fake.s3.download_file(bucket, key, str(target))
    for folder, _, files in os.walk(root):
        os.chown(folder, 0, 0)
        os.chmod(folder, 0o755)
        for name in files:
            os.chown(os.path.join(folder, name), 0, 0)
            os.chmod(os.path.join(folder, name), 0o644)
    os.chmod(root, fake.workdir_mode)
    instance.workdir = root
    return root


def drop_workdir(instance: Instance) -> None:
    if instance.workdir is not None:
        shutil.rmtree(instance.workdir, ignore_errors=True)
        instance.workdir = None


def upload_results(fake: FakeQarnot, task: FakeTask, left_out: str = "") -> None:
    """Every instance's working directory into the result bucket: regular files, and empty
    directories as "dir/" objects; symbolic links are not followed. Paths (relative to the working
    directory, "dir/name") that the regex `left_out` finds stay out: the platform's form of the
    paths it matches is not documented, and this is the likeliest one."""
    if fake.s3 is None or not task.result_bucket:
        return
    skipped = re.compile(left_out).search if left_out else (lambda _path: None)
    for instance in task.instances:
        root = instance.workdir
        if root is None:
            continue
        for folder, folders, files in os.walk(root):
            relative = Path(folder).relative_to(root).as_posix()
            prefix = "" if relative == "." else relative + "/"
            if prefix and not folders and not files and not skipped(relative):
                fake.s3.put_object(Bucket=task.result_bucket, Key=prefix, Body=b"")
            for name in files:
                path = Path(folder) / name
                if stat.S_ISREG(path.lstat().st_mode) and not skipped(prefix + name):
                    fake.s3.upload_file(str(path), task.result_bucket, prefix + name)


# --- snapshots -------------------------------------------------------------------------------------


def take_snapshot(fake: FakeQarnot, task: FakeTask, left_out: str = "") -> str:
    """An instant snapshot: InProgress for upload_seconds, then the upload, then Success. Harsh
    reading of an unknown: only its own blacklist applies, not the task's."""
    snapshot_id = str(uuid.uuid4())
    task.snapshots[snapshot_id] = "InProgress"

    def upload() -> None:
        time.sleep(fake.upload_seconds)
        upload_results(fake, task, left_out)
        task.snapshots[snapshot_id] = "Success"

    threading.Thread(target=upload, daemon=True).start()
    return snapshot_id


def snapshot_periodically(fake: FakeQarnot, task: FakeTask, interval: int, left_out: str = "") -> None:
    task.snapshot_interval = interval

    def loop() -> None:
        while not fake.closing.wait(interval) and task.state not in ENDING_STATES | {"PendingDelete"}:
            if task.state == "FullyExecuting":
                upload_results(fake, task, left_out)

    threading.Thread(target=loop, daemon=True).start()


@of_task
def snapshot_status(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    which = request.params["snapshot"]
    if which is None or which not in task.snapshots:
        return no_snapshot_of(request)
    return json_reply(200, {
        "id": which, "taskUuid": task.uuid, "status": task.snapshots[which],
        "triggerDate": api_date(datetime.now(timezone.utc)), "snapshotConfig": None,
    })  # fmt: skip


@of_task
def snapshot_now(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    refusal = snapshot_refusal(task, request.body, periodic=False)
    return refusal or json_reply(200, {"id": take_snapshot(fake, task, _blacklist(request.body))})


@of_task
def snapshot_periodic(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    body = request.body
    refusal = snapshot_refusal(task, body, periodic=True)
    if refusal:
        return refusal
    interval = body.get("interval") if isinstance(body, dict) else None
    if not isinstance(interval, int) or interval <= 0:
        return json_reply(400, {"message": f"Invalid snapshot interval: {interval}"})
    if fake.faults.periodic_snapshot_refused:
        return json_reply(500, {"message": "Internal Server Error (injected)"})
    snapshot_periodically(fake, task, interval, _blacklist(body))
    return EMPTY


@of_task
def no_snapshot(fake: FakeQarnot, request: Request, task: FakeTask) -> Answer:
    """Any other request on a task's snapshots."""
    return no_snapshot_of(request)


def no_snapshot_of(request: Request) -> Reply:
    return json_reply(404, {"message": f"No such snapshot: {request.params['snapshot']}"})


def snapshot_refusal(task: FakeTask, body: Any, *, periodic: bool) -> Reply | None:
    if (
        task.state in ENDING_STATES
        or task.state == "PendingDelete"
        or (not periodic and task.state != "FullyExecuting")  # periodic ones start with the task
    ):
        return json_reply(403, {"message": f"Task is {task.state}: it cannot be snapshot"})
    if not task.result_bucket or (isinstance(body, dict) and body.get("bucket")):
        # Harsh: a bucket other than the task's own is not supported by the fake.
        return json_reply(400, {"message": "The task has no result bucket to snapshot into"})
    return None


def _blacklist(body: Any) -> str:
    """The `blacklist` regex of a snapshot request ("" when none)."""
    value = body.get("blacklist") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""
