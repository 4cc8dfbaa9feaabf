"""The Qarnot account behind the token: its profiles, the hardware it may ask for, its balance and
quotas; and the checks a launch passes against them before anything is created (an unknown
profile or hardware key, a launch the quotas cannot hold: one line, exit 2, no task).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from qimg.errors import BackendError, UsageError
from qimg.launcher import tasks
from qimg.launcher.backends.base import AccountView, HardwareOffer, Quota, TaskRequest, is_cluster_profile

SPECIFIC = "SpecificHardwareConstraint"
# The `qimg run` option that asks for a kind of hardware the account offers.
OPTIONS = {
    SPECIFIC: "--hardware", "GpuHardwareConstraint": "--gpu", "SSDHardwareConstraint": "--ssd",
    "MinimumCoreHardwareConstraint": "--cores", "MinimumRamHardwareConstraint": "--ram",
}  # fmt: skip
# The quota of a scheduling type (Reserved: one per reservation).
QUOTA_NAMES = {"Flex": "flex", "OnDemand": "on-demand"}
RESERVED_PREFIX = "reservation "  # then its name


@runtime_checkable
class AccountBackend(Protocol):
    """A backend with an account behind it (Qarnot's)."""

    def profile_names(self) -> list[str]: ...

    def hardware_offers(self) -> list[HardwareOffer]: ...

    def account(self) -> AccountView: ...

    def balance(self) -> float | None: ...


@dataclass(frozen=True)
class Profile:
    name: str
    ssh: bool  # its name says ssh: qimg can log in (the port 22 of its instances is forwarded)
    cluster: bool  # a master (the only one forwarded) and workers

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "ssh": self.ssh, "cluster": self.cluster}


def open_account() -> AccountBackend:
    backend = tasks.open_backend("qarnot")
    if not isinstance(backend, AccountBackend):
        raise BackendError(f"the {backend.name} backend has no account")
    return backend


def summary(backend: AccountBackend) -> AccountView:
    """Counts, quotas and the balance (a launch's checks leave the balance out: it is not needed)."""
    return replace(backend.account(), balance=backend.balance())


def profiles(backend: AccountBackend) -> list[Profile]:
    return [
        Profile(name, "ssh" in name.split("-"), is_cluster_profile(name))
        for name in sorted(backend.profile_names())
    ]


def option_for(offer: HardwareOffer) -> str | None:
    """The `qimg run` option that asks for this hardware, when there is one."""
    option = OPTIONS.get(offer.kind)
    if option is None:
        return None
    if offer.kind == "MinimumRamHardwareConstraint":  # offered in MB, asked for in GB
        return f"{option} {float(offer.value) / 1024:g}" if _is_number(offer.value) else option
    return f"{option} {offer.value}" if offer.value else option


def check_launch(backend: AccountBackend, request: TaskRequest) -> None:
    """The profile, the hardware keys and the quotas, checked before the request is sent."""
    check_known("--profile", request.profile, backend.profile_names(), "qimg profiles")
    if request.hardware.keys:
        keys = [offer.value for offer in backend.hardware_offers() if offer.kind == SPECIFIC]
        for key in request.hardware.keys:
            check_known("--hardware", key, keys, "qimg hardware")
    check_quotas(request, backend.account())


def check_known(option: str, name: str, known: list[str], lister: str) -> None:
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {' or '.join(close)}?"
    else:
        hint = f"`{lister}` lists them" if known else "the account offers none"
    raise UsageError(f"{option} {name}: not one of the account's: {hint}")


def check_quotas(request: TaskRequest, account: AccountView) -> None:
    """Refuse a launch the account cannot hold, with the numbers; unreported numbers are not checked."""
    asked = request.instances
    if account.max_instances is not None and asked > account.max_instances:
        raise UsageError(f"--instances {asked}: the account allows at most {account.max_instances} per task")
    for used, limit, what in (
        (account.tasks, account.max_tasks, "tasks (finished ones count until deleted: `qimg stop`)"),
        (account.running_tasks, account.max_running_tasks, "tasks submitted or running"),
    ):
        if used is not None and limit is not None and used + 1 > limit:
            raise UsageError(f"the account holds {used} of its {limit} {what}: no room for another task")
    cores = asked * (request.hardware.min_cores or 1)  # every instance has at least one core
    if request.scheduling in QUOTA_NAMES:
        quota = account.quota(QUOTA_NAMES[request.scheduling])
        problem = _no_room(quota, asked, cores) if quota is not None else None
        if problem:
            raise UsageError(f"the {problem}: stop tasks (`qimg ls`) or ask for less")
        return
    reservations = [quota for quota in account.quotas if quota.name.startswith(RESERVED_PREFIX)]
    if not reservations:
        raise UsageError("--scheduling reserved: the account has no reservation (`qimg account`)")
    problems = [_no_room(quota, asked, cores) for quota in reservations]
    if all(problems):  # Safe reading of an unknown: one reservation must hold the whole launch.
        raise UsageError(f"no reservation can hold this launch: {'; '.join(p for p in problems if p)}")


def _no_room(quota: Quota, instances: int, cores: int) -> str | None:
    """What the quota lacks for this many instances and cores (None: room enough, or not reported)."""
    for asked, running, limit, what in (
        (instances, quota.running_instances, quota.max_instances, "instances"),
        (cores, quota.running_cores, quota.max_cores, "cores"),
    ):
        if limit is not None and asked + (running or 0) > limit:
            return (
                f"{quota.name} quota cannot hold {asked} more {what}: {running or 0} of {limit} in use, "
                f"{max(0, limit - (running or 0))} free"
            )
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
