"""The Qarnot account behind the token: its profiles, the hardware it may ask for, its balance and
quotas; and the checks a launch passes against them before anything is created (an unknown profile,
one without ssh, --gpu on one without a GPU, hardware the account does not offer, an unknown
reservation, a launch the user's or the organisation's quotas cannot hold: one line, exit 2, no task).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace

from qimg.builder.labels import HostRequirements
from qimg.errors import UsageError
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import (
    ACCOUNT,
    HARDWARE,
    MB_PER_GB,
    ORGANISATION_PREFIX,
    RESERVATION_PREFIX,
    Account,
    AccountView,
    Hardware,
    HardwareChoice,
    HardwareOffer,
    Quota,
    TaskRequest,
    is_cluster_profile,
)

SPECIFIC, GPU, SSD = "SpecificHardwareConstraint", "GpuHardwareConstraint", "SSDHardwareConstraint"
CORES, RAM = "MinimumCoreHardwareConstraint", "MinimumRamHardwareConstraint"
GPU_WORDS = ("gpu", "nvidia", "cuda")  # in a profile's name: it gives its containers a GPU
SHOWN = 4  # names offered in a refusal
# The `qimg run` option that asks for a kind of hardware the account offers.
OPTIONS = {SPECIFIC: "--hardware", GPU: "--gpu", SSD: "--ssd", CORES: "--cores", RAM: "--ram"}
# The quota of a scheduling type (Reserved: one per reservation).
QUOTA_NAMES = {"Flex": "flex", "OnDemand": "on-demand"}


@dataclass(frozen=True)
class Profile:
    name: str
    ssh: bool  # its name says ssh: qimg can log in (the port 22 of its instances is forwarded)
    cluster: bool  # a master (the only one forwarded) and workers
    gpu: bool  # its name says gpu, nvidia or cuda: `qimg run --gpu` takes it

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "ssh": self.ssh, "cluster": self.cluster, "gpu": self.gpu}


def open_account(backend: str, what: str) -> Account:
    """The backend called `backend`, opened for its account, or the one line saying it has none."""
    return registry.require(registry.open_backend(backend), ACCOUNT, what)


def open_hardware(backend: str, what: str) -> HardwareChoice:
    """The backend called `backend`, opened for the machines it may ask for, or the one line saying
    it chooses none."""
    return registry.require(registry.open_backend(backend), HARDWARE, what)


def summary(backend: Account) -> AccountView:
    """Counts, quotas and the balance (a launch's checks leave the balance out: it is not needed)."""
    return replace(backend.account(), balance=backend.balance())


def profiles(backend: Account) -> list[Profile]:
    return [
        Profile(name, is_ssh_profile(name), is_cluster_profile(name), is_gpu_profile(name))
        for name in sorted(backend.profile_names())
    ]


def option_for(offer: HardwareOffer) -> str | None:
    """The `qimg run` option that asks for this hardware, when there is one."""
    option = OPTIONS.get(offer.kind)
    if option is None:
        return None
    if offer.kind == RAM:  # offered in decimal MB, asked for in decimal GB: 32000.0 is --ram 32
        return f"{option} {float(offer.value) / MB_PER_GB:g}" if _is_number(offer.value) else option
    if offer.kind == CORES and _is_number(offer.value):  # a reply's 16.0 is --cores 16
        return f"{option} {float(offer.value):g}"
    return f"{option} {offer.value}" if offer.value else option


def check_launch(
    backend: Account, request: TaskRequest, *, batch: bool = False, offers: list[HardwareOffer] | None = None
) -> list[str]:
    """The profile, the hardware and the quotas, checked before the request is sent (and before any
    upload). Returns what the user should know (an organisation quota that may hold the task in the
    queue). A `batch` task (its command is the task: no login) needs no ssh profile. An account
    whose backend chooses no machines (no `HardwareChoice`) offers no hardware. `offers`: the account's
    hardware, when the launch already asked for it."""
    names = backend.profile_names()
    check_known("--profile", request.profile, names, "qimg profiles")
    check_profile(request, names, batch=batch)
    hardware = request.hardware
    if hardware != Hardware():
        if offers is None:
            offers = backend.hardware_offers() if isinstance(backend, HardwareChoice) else []
        check_hardware(hardware, offers)
    return check_quotas(request, backend.account())


def check_known(option: str, name: str, known: list[str], lister: str) -> None:
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {' or '.join(close)}?"
    else:
        hint = f"`{lister}` lists them" if known else "the account offers none"
    raise UsageError(f"{option} {name}: not one of the account's: {hint}")


def is_ssh_profile(name: str) -> bool:
    """Only profiles with "ssh" in their name forward port 22 (Qarnot's docs)."""
    return "ssh" in name.split("-")


def is_gpu_profile(name: str) -> bool:
    """GPU profiles are account-specific; qimg takes a profile whose name says gpu, nvidia or cuda for
    one (Qarnot names its GPU profiles after the GPU: docker-nvidia-network-ssh and the like). A GPU
    hardware constraint alone does not give the container the GPU."""
    return any(word in name.lower() for word in GPU_WORDS)


def check_profile(request: TaskRequest, names: list[str], *, batch: bool = False) -> None:
    """A profile qimg can log into (unless `batch`), with a GPU if --gpu asks for one."""
    profile = request.profile
    if not batch and not is_ssh_profile(profile):
        usable = [name for name in names if is_ssh_profile(name)]
        raise UsageError(
            f"--profile {profile}: it does not forward port 22 (only profiles with ssh in their name do), so "
            f"qimg could not log in (with --command, the command runs as the task instead): "
            f"{_choose('--profile', usable, 'the account lists no ssh profile')}"
        )
    if request.hardware.gpu and not is_gpu_profile(profile):
        usable = [name for name in names if is_gpu_profile(name) and (batch or is_ssh_profile(name))]
        raise UsageError(
            f"--gpu: profile {profile} gives its containers no GPU (a GPU profile has "
            f"{' or '.join(GPU_WORDS)} in its name): "
            f"{_choose('--profile', usable, 'the account lists no GPU ssh profile')}"
        )


def _choose(option: str, names: list[str], none: str) -> str:
    if not names:
        return none
    shown = names[:SHOWN]
    return f"use {' or '.join(f'{option} {name}' for name in shown)}" + (
        " (`qimg profiles`)" * (len(names) > SHOWN)
    )


def check_hardware(hardware: Hardware, offers: list[HardwareOffer]) -> None:
    """Each constraint against the account's offers. Qarnot's values are discrete (cores 8, 16, 32;
    RAM 32000.0 MB ...) and a constraint no offer satisfies is refused at submit (402): the harsh
    reading of "satisfies" is taken, a value qimg sends must be one the account lists."""
    if hardware.min_cores is not None:
        check_offered("--cores", hardware.min_cores, _offered(offers, CORES), 1)
    if hardware.min_ram_mb is not None:
        check_offered("--ram", hardware.min_ram_mb, _offered(offers, RAM), MB_PER_GB)
    for option, asked, kind in (("--gpu", hardware.gpu, GPU), ("--ssd", hardware.ssd, SSD)):
        if asked and not any(offer.kind == kind for offer in offers):
            raise UsageError(
                f"{option}: the account offers no such machine (`qimg hardware` lists what it does)"
            )
    if hardware.keys:
        keys = [offer.value for offer in offers if offer.kind == SPECIFIC]
        for key in hardware.keys:
            check_known("--hardware", key, keys, "qimg hardware")


def fit_host_requirements(
    request: TaskRequest, needs: HostRequirements, offers: list[HardwareOffer], image: str
) -> tuple[TaskRequest, tuple[str, ...]]:
    """The image's hostRequirements (its devcontainer's) as the request's hardware where the user chose
    none (--cores, --ram): the least cores and memory the account offers at or above each, since a
    requirement is a least amount and Qarnot takes only the values it offers; and a GPU, which needs a
    GPU profile. Also what the user should know: a requirement the account has no constraint for."""
    hardware, notes = request.hardware, []
    chosen: dict[str, int | None] = {}
    for kind, asked, given, what, option, unit in (
        (CORES, needs.cpus, hardware.min_cores, "cpus", "--cores", 1),
        (RAM, needs.memory_mb, hardware.min_ram_mb, "MB of memory", "--ram", MB_PER_GB),
    ):
        chosen[kind] = given
        if asked is None or given is not None:
            continue
        offered = sorted(_offered(offers, kind))
        if not offered:
            notes.append(
                f"{image} asks for {asked} {what} (hostRequirements), and the account has no {option} "
                "constraint: any machine may run it"
            )
            continue
        fit = next((value for value in offered if value >= asked), None)
        if fit is None:
            raise UsageError(
                f"{image} asks for {asked} {what} (its devcontainer's hostRequirements), more than the "
                f"account offers ({option} {offered[-1] / unit:g} at most, `qimg hardware`): choose with "
                f"{option}, or build it without (--ignore hostRequirements)"
            )
        chosen[kind] = math.ceil(fit)
    if needs.gpu and not is_gpu_profile(request.profile):
        raise UsageError(
            f"{image} needs a GPU (its devcontainer's hostRequirements.gpu), and profile {request.profile} "
            f"gives its containers none: run it with a GPU profile, --profile NAME (`qimg profiles`)"
        )
    fitted = replace(hardware, min_cores=chosen[CORES], min_ram_mb=chosen[RAM], gpu=hardware.gpu or needs.gpu)
    return replace(request, hardware=fitted), tuple(notes)


def _offered(offers: list[HardwareOffer], kind: str) -> list[float]:
    return [float(offer.value) for offer in offers if offer.kind == kind and _is_number(offer.value)]


def check_offered(option: str, asked: float, offered: list[float], unit: int) -> None:
    """`asked` (in the API's unit) is one of the values offered; else the nearest below and above are
    named, as `option` takes them (in `unit`s of the API's)."""
    if any(math.isclose(asked, value) for value in offered):
        return
    if not offered:
        raise UsageError(
            f"{option} {asked / unit:g}: the account offers no such constraint (`qimg hardware`)"
        )
    below = max((value for value in offered if value < asked), default=None)
    above = min((value for value in offered if value > asked), default=None)
    nearest = " or ".join(f"{option} {value / unit:g}" for value in (below, above) if value is not None)
    raise UsageError(
        f"{option} {asked / unit:g}: not a value the account offers (Qarnot's are discrete, `qimg hardware` "
        f"lists them): nearest {nearest}"
    )


def check_quotas(request: TaskRequest, account: AccountView) -> list[str]:
    """Refuse a launch the account cannot hold, with the numbers; unreported numbers are not checked.
    Returns a note when the organisation's quota is too busy to start the task now: the service
    queues such a launch (colleagues' tasks end and free it), so it is said, not refused; a launch
    larger than the organisation's whole quota could never start and is refused."""
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
    plan = _quota_name(request, account)
    quota = account.quota(plan)
    problem = _no_room(quota, asked, cores) if quota is not None else None
    if problem:
        raise UsageError(f"the {problem}: stop tasks (`qimg ls`) or ask for less")
    organisation = account.quota(ORGANISATION_PREFIX + plan)
    if organisation is None:
        return []
    for wanted, limit, what in (
        (asked, organisation.max_instances, "instances"),
        (cores, organisation.max_cores, "cores"),
    ):
        if limit is not None and wanted > limit:
            raise UsageError(
                f"the {organisation.name} quota allows {limit} {what} in all, and this launch asks for "
                f"{wanted}: it could never start, ask for less"
            )
    busy = _no_room(organisation, asked, cores)
    return [f"the {busy}: the task may queue until other tasks of the organisation end"] if busy else []


def _quota_name(request: TaskRequest, account: AccountView) -> str:
    """The quota the launch counts against: its scheduling plan's, or its reservation's."""
    if request.scheduling in QUOTA_NAMES:
        return QUOTA_NAMES[request.scheduling]
    reservations = [
        quota.name.removeprefix(RESERVATION_PREFIX)
        for quota in account.quotas
        if quota.name.startswith(RESERVATION_PREFIX)
    ]
    if not reservations:
        raise UsageError("--scheduling reserved: the account has no reservation (`qimg account`)")
    check_known("--reservation", request.reservation or "", reservations, "qimg account")
    return RESERVATION_PREFIX + (request.reservation or "")


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
