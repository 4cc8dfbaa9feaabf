"""The account's checks before a launch (profile, hardware keys, quotas), and its replies read as
untrusted input (shapes the SDK passes through, pages that never end, numbers that are not)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from qimg.builder.labels import HostRequirements
from qimg.errors import UsageError
from qimg.launcher import account
from qimg.launcher.backends import base, qarnot_worker
from qimg.launcher.backends.base import AccountView, Hardware, HardwareOffer, Quota, TaskRequest

PROFILES = ["docker-batch", "docker-network-ssh", "docker-cluster-network-ssh", "docker-nvidia-network-ssh"]


class Account:
    def __init__(self, view: AccountView, offers: list[HardwareOffer] | None = None) -> None:
        self.view, self.offers = view, offers or []

    def profile_names(self) -> list[str]:
        return PROFILES

    def hardware_offers(self) -> list[HardwareOffer]:
        return self.offers

    def account(self) -> AccountView:
        return self.view

    def balance(self) -> float | None:
        return self.view.balance


def view(*quotas: Quota, **numbers: int | None) -> AccountView:
    fields: dict[str, Any] = {
        "balance": 1.0, "tasks": 0, "max_tasks": 10, "running_tasks": 0, "max_running_tasks": 5,
        "max_instances": 64, **numbers,
    }  # fmt: skip
    return AccountView(quotas=quotas, **fields)


def ask(
    instances: int = 1,
    cores: int | None = None,
    scheduling: str = "Flex",
    keys: tuple[str, ...] = (),
    reservation: str | None = None,
    profile: str = "docker-network-ssh",
    **hardware: Any,
) -> TaskRequest:
    return TaskRequest(
        "t", "i", profile, instances, hardware=Hardware(min_cores=cores, keys=keys, **hardware),
        scheduling=scheduling, reservation=reservation,
    )  # fmt: skip


def test_the_account_backend_is_recognised() -> None:
    assert isinstance(Account(view()), base.Account) and isinstance(Account(view()), base.HardwareChoice)
    assert not isinstance(object(), base.Account)


@pytest.mark.parametrize(
    ("name", "hint"),
    [("docker-network-shh", "did you mean docker-network-ssh?"), ("gpu", "`qimg profiles` lists them")],
)
def test_an_unknown_profile_gets_the_closest_names(name: str, hint: str) -> None:
    with pytest.raises(UsageError, match=f"--profile {name}: not one of the account's: {hint}"):
        account.check_known("--profile", name, PROFILES, "qimg profiles")
    with pytest.raises(UsageError, match="the account offers none"):
        account.check_known("--hardware", name, [], "qimg hardware")


def test_hardware_keys_are_checked_against_the_specific_ones_offered() -> None:
    offers = [HardwareOffer("SpecificHardwareConstraint", "16c-128g"), HardwareOffer("GpuHardwareConstraint")]
    backend = Account(view(), offers)
    account.check_launch(backend, ask(keys=("16c-128g",)))
    with pytest.raises(UsageError, match=r"--hardware 16c-128: .*did you mean 16c-128g"):
        account.check_launch(backend, ask(keys=("16c-128",)))


FLEX_CORES = Quota("flex", None, None, 16, 10)
ON_DEMAND_FULL = Quota("on-demand", 1, 1, 8, 0)
RESERVED = (Quota("reservation gpu-week", 1, 0, 4, 0), Quota("reservation b", 4, 4, 8, 0))
ORGANISATION_BUSY = Quota("organisation flex", 10, 9, 100, 50)
REFUSED = {
    "per-task": (view(max_instances=4), ask(5), "--instances 5: the account allows at most 4 per task"),
    "tasks": (view(tasks=10), ask(), "holds 10 of its 10 tasks (finished ones count until deleted"),
    "running-tasks": (view(running_tasks=5), ask(), "holds 5 of its 5 tasks submitted or running"),
    "flex-instances": (
        view(Quota("flex", 8, 6, None, None)), ask(3),
        "flex quota cannot hold 3 more instances: 6 of 8 in use, 2 free",
    ),
    "flex-cores": (view(FLEX_CORES), ask(2, cores=4), "cannot hold 8 more cores: 10 of 16 in use, 6 free"),
    "one-core-each": (view(Quota("flex", None, None, 16, 15)), ask(2), "cannot hold 2 more cores"),
    "on-demand": (view(ON_DEMAND_FULL), ask(scheduling="OnDemand"), "on-demand quota cannot hold 1 more"),
    "no-reservation": (
        view(), ask(scheduling="Reserved", reservation="b"), "--scheduling reserved: the account has no"
    ),
    "unknown-reservation": (
        view(*RESERVED), ask(scheduling="Reserved", reservation="gpu-wek"),
        "--reservation gpu-wek: not one of the account's: did you mean gpu-week?",
    ),
    "reservation-full": (
        view(*RESERVED), ask(2, scheduling="Reserved", reservation="b"),
        "reservation b quota cannot hold 2 more instances: 4 of 4 in use, 0 free",
    ),
    "organisation-whole": (
        view(Quota("flex", 64, 0, 256, 0), Quota("organisation flex", 4, 0, None, None)), ask(5),
        "the organisation flex quota allows 4 instances in all, and this launch asks for 5: it could never "
        "start",
    ),
    "organisation-reservation-whole": (
        view(*RESERVED, Quota("organisation reservation gpu-week", None, None, 2, 0)),
        ask(scheduling="Reserved", reservation="gpu-week", cores=4),
        "the organisation reservation gpu-week quota allows 2 cores in all",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_launch_the_quotas_cannot_hold(case: str) -> None:
    account_view, request_, message = REFUSED[case]
    with pytest.raises(UsageError) as refused:
        account.check_quotas(request_, account_view)
    assert message in str(refused.value)


UNREPORTED = view(Quota("flex", None, None, None, None), tasks=None, max_tasks=None, max_instances=None)
FITTING = {
    "fits": (view(Quota("flex", 8, 6, 16, 10)), ask(2, cores=3)),  # exactly full afterwards
    "unreported": (UNREPORTED, ask(64)),
    "other-plan": (view(ON_DEMAND_FULL), ask(5)),  # a full on-demand quota leaves flex alone
    "its-reservation-fits": (  # the other one is full
        view(Quota("reservation gpu-week", 1, 1, 4, 0), Quota("reservation b", 4, 2, 8, 0)),
        ask(2, scheduling="Reserved", reservation="b"),
    ),
    "organisation-fits": (view(Quota("organisation flex", 10, 8, 100, 50)), ask(2)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FITTING))
def test_a_launch_that_fits_or_whose_numbers_are_unreported_passes(case: str) -> None:
    account_view, request_ = FITTING[case]
    assert account.check_quotas(request_, account_view) == []


def test_a_busy_organisation_quota_is_said_not_refused() -> None:
    """The service queues a launch its organisation's quota cannot hold now (colleagues' tasks end):
    the user is told, the launch goes on."""
    notes = account.check_quotas(ask(2), view(Quota("flex", 64, 0, 256, 0), ORGANISATION_BUSY))
    assert notes == [
        "the organisation flex quota cannot hold 2 more instances: 9 of 10 in use, 1 free: the task may "
        "queue until other tasks of the organisation end"
    ]


OFFERS = [
    HardwareOffer("MinimumCoreHardwareConstraint", "8"), HardwareOffer("MinimumCoreHardwareConstraint", "16"),
    HardwareOffer("MinimumCoreHardwareConstraint", "32"),
    HardwareOffer("MinimumRamHardwareConstraint", "32000.0"),
    HardwareOffer("MinimumRamHardwareConstraint", "128000.0"), HardwareOffer("SSDHardwareConstraint"),
]  # fmt: skip
HARDWARE_REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "cores between": ({"cores": 10}, r"--cores 10: not a value the account offers \(Qarnot's are discrete, "
                      r"`qimg hardware` lists them\): nearest --cores 8 or --cores 16$"),
    "cores above": ({"cores": 64}, "--cores 64: not a value the account offers .*: nearest --cores 32$"),
    "ram binary": ({"min_ram_mb": 32768}, "--ram 32.768: .*nearest --ram 32 or --ram 128$"),
    "ram above": ({"min_ram_mb": 131072}, "--ram 131.072: .*nearest --ram 128$"),
    "ram below": ({"min_ram_mb": 16000}, "--ram 16: .*nearest --ram 32$"),
    "gpu": (
        {"gpu": True, "profile": "docker-nvidia-network-ssh"}, "--gpu: the account offers no such machine"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HARDWARE_REFUSED))
def test_hardware_not_offered_is_refused_with_the_nearest_offers(case: str) -> None:
    options, message = HARDWARE_REFUSED[case]
    with pytest.raises(UsageError, match=message):
        account.check_launch(Account(view(), OFFERS), ask(**options))


def test_hardware_offered_passes_and_no_offers_refuse() -> None:
    backend = Account(view(), OFFERS)
    offered: list[dict[str, Any]] = [{"cores": 16}, {"min_ram_mb": 32000}, {"min_ram_mb": 128e3, "ssd": True}]
    for options in offered:
        assert account.check_launch(backend, ask(**options)) == []
    with pytest.raises(UsageError, match="--cores 8: the account offers no such constraint"):
        account.check_launch(Account(view(), []), ask(cores=8))


def test_profiles_without_ssh_or_without_a_gpu_are_refused_naming_those_that_fit() -> None:
    backend = Account(view(), [HardwareOffer("GpuHardwareConstraint")])
    with pytest.raises(UsageError, match=(
        r"--profile docker-batch: it does not forward port 22 .* use --profile docker-network-ssh or "
        r"--profile docker-cluster-network-ssh or --profile docker-nvidia-network-ssh$"
    )):  # fmt: skip
        account.check_launch(backend, ask(profile="docker-batch"))
    with pytest.raises(UsageError, match=(
        r"--gpu: profile docker-network-ssh gives its containers no GPU .*: "
        r"use --profile docker-nvidia-network-ssh$"
    )):  # fmt: skip
        account.check_launch(backend, ask(gpu=True))
    assert account.check_launch(backend, ask(gpu=True, profile="docker-nvidia-network-ssh")) == []
    assert [profile.name for profile in account.profiles(backend) if profile.gpu] == [
        "docker-nvidia-network-ssh"
    ]


def test_profile_list_replies() -> None:
    reply = ["docker-network-ssh", 3, None, "bad\x1bname", "a b", "docker-batch"]
    assert qarnot_worker.profile_names(SimpleNamespace(profiles_names=lambda: reply)) == [
        "docker-batch", "docker-network-ssh",
    ]  # fmt: skip
    for wrong in ({"a": 1}, "docker-batch", None):
        with pytest.raises(ValueError, match="not a list"):
            qarnot_worker.profile_names(SimpleNamespace(profiles_names=lambda wrong=wrong: wrong))


class Pages:
    """A hardware listing whose replies say there is always more."""

    def __init__(self, items: list[Any], total: Any) -> None:
        self.items, self.total, self.asked = items, total, 0

    def hardware_constraints_page(self, limit: int, offset: int) -> Any:
        self.asked += 1
        return SimpleNamespace(page_data=self.items, total=self.total, limit=limit, offset=0)


def test_hardware_pages_that_never_end_are_cut() -> None:
    from qarnot.hardware_constraint import GpuHardware, SpecificHardware

    endless = Pages([SpecificHardware("k1"), GpuHardware(), None], total=10**9)
    offers = qarnot_worker.hardware_offers(endless)
    assert endless.asked == qarnot_worker.HARDWARE_PAGES  # the reply's own offset (always 0) is not followed
    specific, gpu = HardwareOffer("SpecificHardwareConstraint", "k1"), HardwareOffer("GpuHardwareConstraint")
    assert offers == [specific, gpu]  # unknown kinds (None) left out, duplicates once
    assert qarnot_worker.hardware_offers(Pages([], total=10**9)) == []
    assert qarnot_worker.hardware_offers(Pages([SpecificHardware("bad\x1bkey")], total="many")) == []


def test_user_info_numbers_are_checked() -> None:
    from qarnot.connection import UserInfo

    info = UserInfo({
        "taskCount": 3, "maxTask": "50", "runningTaskCount": -1, "maxRunningTask": True, "maxInstances": 64,
        "computingQuotas": {"user": {
            "flex": {"maxInstances": 10, "runningInstancesCount": 2, "maxCores": 40, "runningCoresCount": .5},
            "onDemand": {"maxInstances": "x"},
            "reserved": [{"reservationName": "r1", "maxInstances": 2, "runningInstancesCount": 0},
                         {"reservationName": "bad\nname", "maxInstances": 2}],
        }, "organization": {
            "name": "org", "flex": {"maxInstances": 100, "runningInstancesCount": 30, "maxCores": "many"},
            "onDemand": None, "reserved": [{"reservationName": "r1", "maxCores": 16, "runningCoresCount": 4}],
        }},
    })  # fmt: skip
    seen = qarnot_worker.account_view(SimpleNamespace(user_info=info))
    assert (seen.tasks, seen.max_tasks, seen.running_tasks, seen.max_running_tasks) == (3, None, None, None)
    assert seen.quotas == (
        Quota("flex", 10, 2, 40, None), Quota("on-demand", None, None, None, None),
        Quota("reservation r1", 2, 0, None, None),
        Quota("organisation flex", 100, 30, None, None),
        Quota("organisation reservation r1", None, None, 16, 4),
    )  # fmt: skip


# The SDK's own parser breaks on these: a list, a string, a quota object that is null.
WRONG_SHAPES = [[1, 2], "text", {"computingQuotas": {"user": {"flex": {}, "onDemand": None}}}]


@pytest.mark.parametrize("reply", WRONG_SHAPES)
def test_a_user_info_reply_of_the_wrong_shape_is_a_value_error(reply: Any) -> None:
    from qarnot.connection import UserInfo

    class Connection:
        @property
        def user_info(self) -> Any:
            return UserInfo(reply)  # as the SDK builds it from whatever GET /info sent

    with pytest.raises(ValueError, match="Qarnot sent a reply qimg cannot read"):
        qarnot_worker.account_view(Connection())


@pytest.mark.parametrize(("credits", "balance"), [(12.5, 12.5), (3, 3.0), (float("nan"), None), ("12", None)])
def test_the_balance_is_a_finite_number_or_unknown(credits: Any, balance: float | None) -> None:
    connection = SimpleNamespace(credits=lambda: SimpleNamespace(amount_in_euros=credits))
    assert qarnot_worker.balance(connection) == balance


def test_options_for_offered_hardware() -> None:
    assert account.option_for(HardwareOffer("SpecificHardwareConstraint", "k")) == "--hardware k"
    assert account.option_for(HardwareOffer("MinimumRamHardwareConstraint", "32000.0")) == "--ram 32"
    assert account.option_for(HardwareOffer("MinimumRamHardwareConstraint", "1500")) == "--ram 1.5"
    assert account.option_for(HardwareOffer("MinimumCoreHardwareConstraint", "16.0")) == "--cores 16"
    assert account.option_for(HardwareOffer("GpuHardwareConstraint")) == "--gpu"
    assert account.option_for(HardwareOffer("CpuModelHardwareConstraint", "EPYC")) is None


HOST_OFFERS = [
    HardwareOffer(account.CORES, "8"),
    HardwareOffer(account.CORES, "16"),
    HardwareOffer(account.CORES, "32"),
    HardwareOffer(account.RAM, "32000.0"),
    HardwareOffer(account.RAM, "64000.0"),
    HardwareOffer(account.GPU),
]


def test_host_requirements_fitted_to_the_least_offer_at_or_above_them() -> None:
    fitted, notes = account.fit_host_requirements(ask(), HostRequirements(10, 34360), HOST_OFFERS, "img")
    assert (fitted.hardware.min_cores, fitted.hardware.min_ram_mb, fitted.hardware.gpu) == (16, 64000, False)
    assert notes == ()
    account.check_hardware(fitted.hardware, HOST_OFFERS)  # what it chose passes the launch's own check
    exact, _ = account.fit_host_requirements(ask(), HostRequirements(8, 32000), HOST_OFFERS, "img")
    assert (exact.hardware.min_cores, exact.hardware.min_ram_mb) == (8, 32000)
    # What the user chose wins over the image's.
    chosen, _ = account.fit_host_requirements(ask(cores=8), HostRequirements(10), HOST_OFFERS, "img")
    assert chosen.hardware.min_cores == 8
    gpu, _ = account.fit_host_requirements(
        ask(profile="docker-nvidia-network-ssh"), HostRequirements(gpu=True), HOST_OFFERS, "img"
    )
    assert gpu.hardware.gpu


def test_host_requirements_the_account_cannot_meet() -> None:
    with pytest.raises(UsageError, match=r"img asks for 64 cpus .* \(--cores 32 at most, `qimg hardware`\)"):
        account.fit_host_requirements(ask(), HostRequirements(64), HOST_OFFERS, "img")
    with pytest.raises(UsageError, match=r"more than the account offers \(--ram 64 at most"):
        account.fit_host_requirements(ask(), HostRequirements(memory_mb=70000), HOST_OFFERS, "img")
    with pytest.raises(
        UsageError, match=r"img needs a GPU .* profile docker-network-ssh gives its containers none"
    ):
        account.fit_host_requirements(ask(), HostRequirements(gpu=True), HOST_OFFERS, "img")
    unconstrained, notes = account.fit_host_requirements(ask(), HostRequirements(4), [], "img")
    assert unconstrained.hardware.min_cores is None
    assert notes == (
        "img asks for 4 cpus (hostRequirements), and the account has no --cores constraint: "
        "any machine may run it",
    )
