"""The options of `qimg run`, each written once: its field here (name, type, default) with its flag
and help. The command's parameters are made from these fields (`commands/run.py`), the plan checks
them (`plan.plan_launch`, `worker.plan`), and what they become travels in the plan to the backend's
request. Light (the standard library and `errors`): the CLI reads the fields at every start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qimg.errors import UsageError

FLAG = "qimg.flag"  # the metadata key of a field the user gives as an option


@dataclass(frozen=True)
class Flag:
    """How the user gives a field: its spelling ("" for the command's argument) and help. A field whose
    type is a tuple is repeatable; one of Paths takes local paths, made absolute as typed."""

    spelling: str
    help: str


def option(default: Any, spelling: str, help: str) -> Any:
    """A field the user gives as `spelling`."""
    return field(default=default, metadata={FLAG: Flag(spelling, help)})


def check_timeout(seconds: float) -> float:
    """A `--timeout` (of run, check and doctor): seconds above 0."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"invalid --timeout {seconds}: give a number of seconds above 0")
    return seconds


def _default_backend() -> str:
    from qimg.launcher.backends import registry  # its protocols are not needed to start the CLI

    return registry.DEFAULT


@dataclass(frozen=True)
class WorkerOptions:
    """A task as a worker: its environment, secrets, hardware and scheduling (`worker.plan`)."""

    env: tuple[str, ...] = option((), "--env", "KEY=VALUE for the task and its ssh sessions (repeatable).")
    secrets: tuple[str, ...] = option(
        (), "--secret",
        "NAME of a variable of qimg's environment: sent write-only, seen only by the login user as $NAME "
        "(repeatable).",
    )  # fmt: skip
    cores: int | None = option(None, "--cores", "N cores per instance, as `qimg hardware` offers them.")
    ram_gb: float | None = option(
        None, "--ram", "GB (decimal: 32 is 32000 MB) per instance, as `qimg hardware` offers them."
    )
    gpu: bool = option(False, "--gpu", "A machine with a GPU.")
    ssd: bool = option(False, "--ssd", "A machine with an SSD.")
    hardware: tuple[str, ...] = option(
        (), "--hardware", "Specific hardware by key (repeatable): `qimg hardware`."
    )
    scheduling: str = option(
        "flex", "--scheduling", "flex (may be preempted), on-demand or reserved (with --reservation)."
    )
    reservation: str | None = option(
        None, "--reservation", "With --scheduling reserved: the reservation (`qimg account`)."
    )
    max_queue: str | None = option(None, "--max-queue", "Give up when queued longer: 600, 30m, 2h.")


@dataclass(frozen=True)
class LaunchOptions:
    """What the user asked `qimg run` for, unchecked."""

    image: str | None = option(
        None, "", "Image to run (default: the last pushed, or with --local the last built)."
    )
    backend: str = field(default_factory=_default_backend)  # a name of `registry`; the user's --local
    registry_auth: tuple[str, str] | None = None  # (username, password), read by the command from stdin
    # `option` makes a dataclass field (ruff cannot tell): a Path default would be shared, None is not.
    key: Path | None = option(None, "--key", "Public key (default ~/.ssh/id_ed25519.pub or id_rsa.pub).")  # noqa: RUF009
    user: str | None = option(None, "--user", "Login user (default: the image's).")
    instances: int = option(1, "--instances", "Number of instances.")
    name: str | None = option(None, "--name", "Task name (default USER-XXXX).")
    profile: str = option("docker-network-ssh", "--profile", "Qarnot profile.")
    tunnels: tuple[str, ...] = option(
        (), "--tunnel",
        "LOCAL[:REMOTE] port to forward (repeatable); replaces the image's devcontainer forwardPorts, "
        "which are forwarded otherwise.",
    )  # fmt: skip
    no_tunnel: bool = option(False, "--no-tunnel", "Forward no port, not even the image's forwardPorts.")
    connect: bool = option(False, "--connect", "Open an ssh session when ready.")
    command: str | None = option(None, "--command", "Run this over ssh, exit with its code.")
    timeout: float = option(600.0, "--timeout", "Seconds to wait for sshd.")
    max_time: str = option("12h", "--max-time", "Hard limit enforced inside the task: 3600, 90m, 12h, 2d.")
    idle_stop: str | None = option(
        None, "--idle-stop", "Stop the task after this long without an ssh session: 30m, 2h."
    )
    keep: bool = option(False, "--keep", "Never stop the task, even on failure.")
    uploads: tuple[Path, ...] = option(
        (), "--upload", "Directory the task finds in /job/<its name> (repeatable)."
    )
    results: Path | None = option(  # noqa: RUF009
        None, "--results", "New or empty directory: the task's /job comes down there when it ends."
    )
    snapshot_every: str | None = option(
        None, "--snapshot-every", "Upload /job to the results this often: 30m, 2h."
    )
    as_json: bool = False  # the command's shared --json: the ready lines as one JSON object
    worker: WorkerOptions = field(default_factory=WorkerOptions)
