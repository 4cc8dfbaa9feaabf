"""The account behind the token: its profiles, hardware offers, quotas, credits and settings.

Routes: GET /settings (the storage's URL), GET /info (task counts and computing quotas, the user's and
the organisation's, running counts from the live tasks), GET /profiles, GET /hardware-constraints
(offset pages: discrete values, RAM in decimal MB as floats) and GET /credits/v1/accounts/credits.
POST /tasks (tasks.py) refuses a profile the account does not have, a Reserved task that names none of
its reservations, a hardware constraint no offer satisfies (402, "hardware constraint" in the message)
and, with the SDK's own message, a task over the task quota; the first three are checked here
(`worker_problem`, `hardware_problem`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.qarnot.replies import Answer, Request, json_reply

if TYPE_CHECKING:
    from tests.fakes.qarnot.server import FakeQarnot

# The hardware constraints the SDK knows (qarnot/hardware_constraint.py), and the field each carries.
HARDWARE_FIELDS = {
    "MinimumCoreHardwareConstraint": "coreCount", "MaximumCoreHardwareConstraint": "coreCount",
    "MinimumRamCoreRatioHardwareConstraint": "minimumMemoryGBCoreRatio",
    "MaximumRamCoreRatioHardwareConstraint": "maximumMemoryGBCoreRatio",
    "MinimumRamHardwareConstraint": "minimumMemoryMB", "MaximumRamHardwareConstraint": "maximumMemoryMB",
    "SpecificHardwareConstraint": "specificationKey", "CpuModelHardwareConstraint": "cpuModel",
    "GpuHardwareConstraint": None, "NoGpuHardwareConstraint": None, "SSDHardwareConstraint": None,
    "NoSSDHardwareConstraint": None,
}  # fmt: skip
SCHEDULING_TYPES = {"Flex": "flex", "OnDemand": "onDemand", "Reserved": "reserved"}  # -> its quota
RUNNING_COUNTS = ("runningInstancesCount", "runningCoresCount")


@dataclass
class Account:
    """The account behind the token. Quotas are limits; what runs is counted from the live tasks."""

    profiles: list[str] = field(
        default_factory=lambda: [
            "docker-batch", "docker-network", "docker-network-ssh", "docker-cluster-network-ssh",
            "docker-nvidia-network-ssh",
        ]
    )  # fmt: skip
    # As Qarnot's hardware page lists an account's offers: discrete values, RAM in decimal MB as
    # floats. A submitted constraint no offer satisfies is refused (402, `hardware_problem`).
    hardware: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"discriminator": "SpecificHardwareConstraint", "specificationKey": "16c-128g-amd"},
            {"discriminator": "SpecificHardwareConstraint", "specificationKey": "8c-32g-nvidia-a4000"},
            {"discriminator": "GpuHardwareConstraint"},
            {"discriminator": "SSDHardwareConstraint"},
            {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 8},
            {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 16},
            {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 32},
            {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 32000.0},
            {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 64000.0},
            {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 128000.0},
        ]
    )  # fmt: skip
    balance: float = 42.5  # euros
    max_tasks: int = 50
    max_running_tasks: int = 20
    max_instances: int = 64
    # {"maxInstances", "maxCores"} per scheduling plan, and for each reservation its
    # "reservationName" and "machineKey" too.
    flex: dict[str, int] = field(default_factory=lambda: {"maxInstances": 64, "maxCores": 256})
    on_demand: dict[str, int] = field(default_factory=lambda: {"maxInstances": 16, "maxCores": 64})
    reserved: list[dict[str, Any]] = field(default_factory=list)
    # computingQuotas.organization: limits as above (and "reservationName" for each reservation),
    # and what the organisation's other users run ("runningInstancesCount", "runningCoresCount");
    # this user's live tasks are added to those. None: not reported.
    organization: dict[str, Any] | None = field(
        default_factory=lambda: {
            "name": "fake-org", "flex": {"maxInstances": 128, "maxCores": 512},
            "onDemand": {"maxInstances": 32, "maxCores": 128}, "reserved": [],
        }
    )  # fmt: skip


# --- routes ----------------------------------------------------------------------------------------


def settings(fake: FakeQarnot, request: Request) -> Answer:
    if fake.faults.settings_errors:
        return json_reply(fake.faults.settings_errors.pop(0), {"message": "Service Unavailable (injected)"})
    return json_reply(200, {"storage": fake.storage_url})


def info(fake: FakeQarnot, request: Request) -> Answer:
    return json_reply(200, user_info(fake))


def profiles(fake: FakeQarnot, request: Request) -> Answer:
    return json_reply(200, fake.account.profiles)


def hardware(fake: FakeQarnot, request: Request) -> Answer:
    """An offset page, as the SDK's hardware_constraints_page reads it."""
    try:
        limit, offset = int(request.query.get("limit", "50")), int(request.query.get("offset", "0"))
    except ValueError:
        return json_reply(400, {"message": "limit and offset must be numbers"})
    offered = fake.account.hardware
    page = offered[offset : offset + max(limit, 0)]
    return json_reply(200, {"data": page, "total": len(offered), "limit": limit, "offset": offset})


def credits(fake: FakeQarnot, request: Request) -> Answer:
    if fake.faults.credits_unavailable:
        return json_reply(503, {"message": "Service Unavailable (injected)"})
    return json_reply(200, {"credits": fake.account.balance})


# --- quotas ----------------------------------------------------------------------------------------


def user_info(fake: FakeQarnot) -> dict[str, Any]:
    """GET /info, as the SDK's UserInfo and ComputingQuotas read it."""
    with fake.lock:
        live = fake.live()
        running = {
            plan: {"runningInstancesCount": 0, "runningCoresCount": 0} for plan in ("flex", "onDemand")
        }
        for task in live:
            counts = running.get(SCHEDULING_TYPES.get(task.scheduling or "Flex", ""))
            if counts is not None:
                counts["runningInstancesCount"] += task.instance_count
                counts["runningCoresCount"] += task.instance_count * task.cores_per_instance
        account = fake.account
        return {
            "email": "fake@example.com", "taskCount": len(fake.tasks), "maxTask": account.max_tasks,
            "runningTaskCount": len(live), "maxRunningTask": account.max_running_tasks,
            "maxInstances": account.max_instances,
            "computingQuotas": {
                "user": {
                    "flex": {**account.flex, **running["flex"]},
                    "onDemand": {**account.on_demand, **running["onDemand"]},
                    "reserved": [
                        {"runningInstancesCount": 0, "runningCoresCount": 0, **reservation}
                        for reservation in account.reserved
                    ],
                },
                "organization": organization_quotas(account.organization, running),
            },
        }  # fmt: skip


def organization_quotas(organization: dict[str, Any] | None, mine: dict[str, dict[str, int]]) -> Any:
    """The organisation's part of computingQuotas: its other users' use plus this user's `mine`."""
    if organization is None:
        return None

    def plan(quota: dict[str, Any], own: dict[str, int]) -> dict[str, Any]:
        return {
            **quota, **{count: quota.get(count, 0) + own.get(count, 0) for count in RUNNING_COUNTS}
        }  # fmt: skip

    return {
        "name": organization.get("name"),
        "flex": plan(organization["flex"], mine["flex"]),
        "onDemand": plan(organization["onDemand"], mine["onDemand"]),
        "reserved": [plan(reservation, {}) for reservation in organization.get("reserved", [])],
    }


# --- what a submission asks of the account -------------------------------------------------------


def hardware_problem(body: dict[str, Any], account: Account) -> str | None:
    """Why no offer of the account satisfies a submitted hardware constraint (Qarnot answers 402 with
    "hardware constraint" in the message, qarnot/task.py). Harsh reading of an unknown: offers are
    discrete, and a value that is not one of them is refused rather than rounded to one."""
    for constraint in body.get("hardwareConstraints", []):
        kind = constraint["discriminator"]
        wanted = HARDWARE_FIELDS[kind]
        offered = [offer for offer in account.hardware if offer["discriminator"] == kind]
        if wanted is None and offered:
            continue
        if wanted in {"coreCount", "minimumMemoryMB", "maximumMemoryMB"}:
            if any(float(offer[wanted]) == float(constraint[wanted]) for offer in offered):
                continue
        elif wanted is not None and any(offer.get(wanted) == constraint.get(wanted) for offer in offered):
            continue
        value = "" if wanted is None else f" {constraint[wanted]}"
        return f"No machine of the account satisfies the hardware constraint {kind}{value}"
    return None


def worker_problem(body: dict[str, Any], account: Account) -> str | None:
    """Why the API refuses the task's profile, hardware constraints, scheduling type or time in
    queue, or None. Harsh reading of an unknown: a profile the account does not list is refused."""
    if body["profile"] not in account.profiles:
        return f"Unknown profile: {str(body['profile'])[:60]}"
    constraints = body.get("hardwareConstraints", [])
    if not isinstance(constraints, list):
        return "hardwareConstraints must be a list"
    for constraint in constraints:
        kind = constraint.get("discriminator") if isinstance(constraint, dict) else None
        if kind not in HARDWARE_FIELDS:
            return f"Unknown hardware constraint: {str(kind)[:60]}"
        wanted = HARDWARE_FIELDS[kind]
        if set(constraint) != {"discriminator"} | ({wanted} if wanted else set()):
            return f"{kind}: unexpected fields {sorted(constraint)}"
        value = constraint.get(wanted) if wanted else None
        if wanted == "coreCount" and not (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        ):
            return f"{kind}: {wanted} must be a whole number above 0"
        if wanted in {"minimumMemoryMB", "maximumMemoryMB"} and not (
            isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")
        ):  # MB, a number (Qarnot's offers are floats: 32000.0)
            return f"{kind}: {wanted} must be a number above 0"
        if wanted in {"specificationKey", "cpuModel"} and not (isinstance(value, str) and value):
            return f"{kind}: {wanted} must be a non-empty string"
    if body.get("schedulingType", "Flex") not in SCHEDULING_TYPES:
        return f"Unknown scheduling type: {str(body.get('schedulingType'))[:60]}"
    # Harsh reading of an unknown: Reserved needs a reservation of the account, by name.
    target = body.get("targetedReservationName")
    if body.get("schedulingType") == "Reserved" and target not in {
        r["reservationName"] for r in account.reserved
    }:
        return f"Unknown reservation: {str(target)[:60]}"
    queue = body.get("maxTimeQueueSeconds")
    if queue is not None and not (isinstance(queue, int) and not isinstance(queue, bool) and queue > 0):
        return "maxTimeQueueSeconds must be a whole number above 0"
    return None
