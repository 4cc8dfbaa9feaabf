"""What the platform holds: a task, its instances, and the states a task goes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# Execution is over in all of these. The SDK's wait() still waits through UploadingResults and
# DownloadingResults (results move after the instances stopped), but nothing runs any more.
ENDING_STATES = frozenset(
    {"UploadingResults", "DownloadingResults", "PendingCancel", "Cancelled", "Success", "Failure"}
)
CORES_PER_INSTANCE = 2  # what an instance counts against the core quotas without MinimumCore

Entry = tuple[float, str]  # (when the engine logged it, in seconds since the epoch; the text, with "\n")


@dataclass
class Instance:
    index: int
    container_id: str = ""
    port: int = 0
    attempts: int = 0
    # Output of containers gone (earlier attempts, an aborted task): Qarnot keeps it.
    earlier: dict[str, list[Entry]] = field(default_factory=lambda: {"stdout": [], "stderr": []})
    workdir: Path | None = None  # the host directory mounted at DOCKER_WORKDIR (with storage)


@dataclass
class FakeTask:
    uuid: str
    name: str
    profile: str
    instance_count: int
    constants: dict[str, str]  # the true values, secrets included (see tasks.visible_constants)
    tags: list[str]
    created: datetime
    state: str = "Submitted"
    errors: list[dict[str, str]] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    forwards_from: float = 0.0
    # Where each fresh (POST) reader is: (stream, instance asked for or None for all, instance) ->
    # characters of that instance's output already returned.
    fresh_offsets: dict[tuple[str, int | None, int], int] = field(default_factory=dict)
    executing_since: float = 0.0
    hidden_reads: int = 0  # GET /tasks/{uuid} answers 404 this many more times (missing_after_create)
    deleted_at: float = 0.0
    resource_buckets: list[str] = field(default_factory=list)
    result_bucket: str = ""
    upload_results_on_cancellation: bool = False
    snapshot_interval: int = 0
    snapshots: dict[str, str] = field(default_factory=dict)  # instant snapshot id -> status
    # Regexes of paths under the working directory left out (snapshotBlacklist, resultsBlacklist).
    snapshot_blacklist: str = ""
    results_blacklist: str = ""
    hardware: list[dict[str, Any]] = field(default_factory=list)  # hardwareConstraints, as sent
    scheduling: str | None = None  # schedulingType, as sent (None: the platform's default, Flex)
    max_time_queue: int | None = None  # maxTimeQueueSeconds
    held: bool = False  # waits in the queue for good (FakeQarnot.unoffered_ram == "queue")

    @property
    def cores_per_instance(self) -> int:
        minimum = "MinimumCoreHardwareConstraint"
        asked = [int(c["coreCount"]) for c in self.hardware if c["discriminator"] == minimum]
        return max([CORES_PER_INSTANCE, *asked])
