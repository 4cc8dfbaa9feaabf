"""The SDK's side of worker options and of the account.

A request's hardware, scheduling and time in queue become the SDK's own objects on the task (so
the body is the SDK's: `hardwareConstraints`, `schedulingType`, `maxTimeQueueSeconds`). The
account's replies (profiles, hardware constraints, user information, balance) are untrusted: they
are checked here, where they enter, and what does not hold is refused as a ValueError (or, for an
item of a list, left out).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from qimg.launcher.backends.base import (
    ORGANISATION_PREFIX,
    RESERVATION_PREFIX,
    AccountView,
    HardwareOffer,
    Quota,
    TaskRequest,
)

PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
KIND = re.compile(r"[A-Za-z]{1,80}")
VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,198}[\x21-\x7e])?")  # a key, a number, a CPU model
HARDWARE_PAGE, HARDWARE_PAGES = 50, 40  # the listing is paged; a reply that never ends is cut here
P = ParamSpec("P")
T = TypeVar("T")


def _untrusted(read: Callable[P, T]) -> Callable[P, T]:
    """A read whose reply the SDK parses without checking its shape (`json.get` on a list, ...): what
    breaks the SDK's parser or ours becomes a ValueError, which the backend reports in one line."""

    @functools.wraps(read)
    def checked(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return read(*args, **kwargs)
        except (AttributeError, TypeError, KeyError) as error:
            raise ValueError(f"Qarnot sent a reply qimg cannot read ({type(error).__name__})") from None

    return checked


def apply(task: Any, request: TaskRequest) -> None:
    """Hardware constraints, scheduling type and maximum time in queue, set on an SDK task."""
    from qarnot import hardware_constraint as constraint
    from qarnot import scheduling_type

    hardware = request.hardware
    wanted: list[Any] = []
    if hardware.min_cores is not None:
        wanted.append(constraint.MinimumCoreHardware(hardware.min_cores))
    if hardware.min_ram_mb is not None:
        wanted.append(constraint.MinimumRamHardware(hardware.min_ram_mb))
    if hardware.gpu:
        wanted.append(constraint.GpuHardware())
    if hardware.ssd:
        wanted.append(constraint.SSDHardware())
    wanted.extend(constraint.SpecificHardware(key) for key in hardware.keys)
    task.hardware_constraints = wanted
    kinds = {
        "Flex": scheduling_type.FlexScheduling, "OnDemand": scheduling_type.OnDemandScheduling,
        "Reserved": scheduling_type.ReservedScheduling,
    }  # fmt: skip
    task.scheduling_type = kinds[request.scheduling]()
    if request.reservation is not None:
        task.targeted_reservation_name = request.reservation
    if request.max_queue_seconds is not None:
        task.max_time_queue_seconds = request.max_queue_seconds


@_untrusted
def profile_names(connection: Any) -> list[str]:
    """GET /profiles: a list of names. Names qimg could not pass back as --profile are left out."""
    reply = connection.profiles_names()
    if not isinstance(reply, list):
        raise ValueError("Qarnot sent a profile list that is not a list")
    return sorted({name for name in reply if isinstance(name, str) and PROFILE.fullmatch(name)})


@_untrusted
def hardware_offers(connection: Any) -> list[HardwareOffer]:
    """Every hardware constraint the account may use. The pages are asked for here, not with the SDK's
    all_hardware_constraints(), which follows the reply's own offsets and totals for as long as they
    say there is more."""
    offers: list[HardwareOffer] = []
    for page_number in range(HARDWARE_PAGES):
        page = connection.hardware_constraints_page(limit=HARDWARE_PAGE, offset=page_number * HARDWARE_PAGE)
        items = page.page_data if isinstance(page.page_data, list) else []
        offers.extend(offer for offer in map(_offer, items) if offer is not None)
        total = page.total
        if not items or not isinstance(total, int) or (page_number + 1) * HARDWARE_PAGE >= total:
            break
    return list(dict.fromkeys(offers))


def _offer(item: Any) -> HardwareOffer | None:
    """An SDK constraint (None for a kind the SDK does not know) as kind and value, if both are sane."""
    if item is None:
        return None
    shape = item.to_json()
    if not isinstance(shape, dict):
        return None
    kind = shape.pop("discriminator", None)
    values = [value for value in shape.values() if value is not None]
    value = str(values[0]) if len(values) == 1 and isinstance(values[0], str | int | float) else ""
    if not (isinstance(kind, str) and KIND.fullmatch(kind)) or (values and not VALUE.fullmatch(value)):
        return None
    return HardwareOffer(kind, value)


@_untrusted
def account_view(connection: Any) -> AccountView:
    """The SDK's UserInfo (GET /info), its numbers checked; the balance is read apart (`balance`)."""
    info = connection.user_info
    computing = getattr(info, "computing_quotas", None)
    quotas = _quotas(getattr(computing, "user", None), "")
    # The organisation's: what the user's colleagues run counts there too.
    quotas += _quotas(getattr(computing, "organization", None), ORGANISATION_PREFIX)
    return AccountView(
        balance=None,
        tasks=_count(info.task_count), max_tasks=_count(info.max_task),
        running_tasks=_count(info.running_task_count), max_running_tasks=_count(info.max_running_task),
        max_instances=_count(info.max_instances),
        quotas=tuple(quota for quota in quotas if quota is not None),
    )  # fmt: skip


def _quotas(owner: Any, prefix: str) -> list[Quota | None]:
    """The flex, on-demand and reservation quotas of the user's or the organisation's part of
    computingQuotas (None: not reported)."""
    quotas = [
        _quota(prefix + name, getattr(owner, attribute, None))
        for name, attribute in (("flex", "flex"), ("on-demand", "on_demand"))
    ]
    reserved = getattr(owner, "reserved", None)
    for reservation in reserved if isinstance(reserved, list) else []:
        name = getattr(reservation, "reservation_name", None)
        if isinstance(name, str) and PROFILE.fullmatch(name):
            quotas.append(_quota(f"{prefix}{RESERVATION_PREFIX}{name}", reservation))
    return quotas


def _quota(name: str, quota: Any) -> Quota | None:
    if quota is None:
        return None
    numbers = ("max_instances", "running_instances_count", "max_cores", "running_cores_count")
    return Quota(name, *(_count(getattr(quota, number, None)) for number in numbers))


def _count(value: Any) -> int | None:
    """A count as reported: a whole number from 0; anything else (the SDK's -1 included) is unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@_untrusted
def balance(connection: Any) -> float | None:
    """The account's credits (GET /credits/v1/accounts/credits), in euros, when they are a number."""
    value = getattr(connection.credits(), "amount_in_euros", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
