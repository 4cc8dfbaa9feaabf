"""A launch checked against the account before anything exists (issue 15, section 2, items 2 and 5):
hardware as the account offers it (discrete values, RAM in decimal MB), the profile (ssh, GPU), the
reservation of reserved scheduling, the organisation's quotas; and the queue, which --timeout does
not cut short. The real SDK against the fake API; every refusal is one line, exit 2, no POST /tasks
and no bucket."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import qarnot
from qarnot.exceptions import QarnotGenericException
from qarnot.hardware_constraint import MinimumCoreHardware, MinimumRamHardware

from tests.e2e.conftest import User
from tests.fakes.qarnot import Account, FakeQarnot
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD
from tests.fakes.s3 import S3
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker
GPU_PROFILE = "docker-nvidia-network-ssh"
RESERVATION = {
    "reservationName": "gpu-week",
    "machineKey": "8c-32g-nvidia-a4000",
    "maxInstances": 4,
    "maxCores": 64,
}


def without(kind: str) -> Callable[[Account], None]:
    def drop(account: Account) -> None:
        account.hardware = [offer for offer in account.hardware if offer["discriminator"] != kind]

    return drop


def nothing(account: Account) -> None:
    del account


def reserve(account: Account) -> None:
    account.reserved.append(dict(RESERVATION))


def small_organisation(account: Account) -> None:
    assert account.organization is not None
    account.organization["flex"] = {"maxInstances": 2, "maxCores": 512}


REFUSED: dict[str, tuple[Callable[[Account], None], list[str], list[str]]] = {
    "cores not offered": (nothing, ["--cores", "10"], ["--cores 10: not a value the account offers",
                                                       "nearest --cores 8 or --cores 16"]),
    "ram in binary units": (nothing, ["--ram", "32.768"], ["--ram 32.768", "nearest --ram 32 or --ram 64"]),
    "ram above every offer": (nothing, ["--ram", "131.072"], ["nearest --ram 128"]),
    "gpu not offered": (without("GpuHardwareConstraint"), ["--gpu", "--profile", GPU_PROFILE],
                        ["--gpu: the account offers no such machine"]),
    "ssd not offered": (without("SSDHardwareConstraint"), ["--ssd"], ["--ssd: the account offers no such"]),
    "gpu on a profile without": (nothing, ["--gpu"], [
        "--gpu: profile docker-network-ssh gives its containers no GPU", f"use --profile {GPU_PROFILE}"
    ]),
    "profile without ssh": (nothing, ["--profile", "docker-batch"], [
        "--profile docker-batch: it does not forward port 22",
        "use --profile docker-cluster-network-ssh or --profile docker-network-ssh or --profile "
        f"{GPU_PROFILE}",
    ]),
    "reserved without a reservation": (reserve, ["--scheduling", "reserved"],
                                       ["--scheduling reserved needs --reservation NAME"]),
    "reservation without reserved": (reserve, ["--reservation", "gpu-week"],
                                     ["--reservation 'gpu-week': only with --scheduling reserved"]),
    "unknown reservation": (reserve, ["--scheduling", "reserved", "--reservation", "gpu-wek"],
                            ["--reservation gpu-wek: not one of the account's: did you mean gpu-week?"]),
    "over the organisation's whole quota": (small_organisation, ["--instances", "3"], [
        "the organisation flex quota allows 2 instances in all, and this launch asks for 3"
    ]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_launch_the_account_cannot_take_is_refused_before_anything_exists(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path, case: str
) -> None:
    setup, args, fragments = REFUSED[case]
    setup(fake.account)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "data.txt").write_text("input\n")
    result = user.launch(pushed_image, "--upload", str(inputs), *args)  # inputs would go up first
    assert_one_line_error(result, 2, *fragments)
    assert fake.count("POST", "/tasks") == 0
    assert storage.bucket_names() == []  # no bucket made, no input uploaded


def test_hardware_as_qimg_hardware_prints_it_is_taken_as_is_and_sent_in_qarnot_units(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    listed = json.loads(user.qimg("hardware", "--json").stdout)["hardware"]
    ram = [row["option"] for row in listed if row["kind"] == "MinimumRamHardwareConstraint"]
    cores = [row["option"] for row in listed if row["kind"] == "MinimumCoreHardwareConstraint"]
    assert ram == ["--ram 32", "--ram 64", "--ram 128"] and cores == ["--cores 8", "--cores 16", "--cores 32"]
    assert re.search(r"\n  MinimumRamHardwareConstraint +32000\.0 +--ram 32\n", user.qimg("hardware").stdout)

    result = user.launch(pushed_image, *ram[0].split(), *cores[1].split(), "--command", "true")
    assert result.returncode == 0, result.stderr
    assert fake.body("POST", "/tasks")["hardwareConstraints"] == [
        {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 16},
        {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 32000},
    ]


def test_the_fake_refuses_a_constraint_no_offer_satisfies_as_qarnot_does(fake: FakeQarnot) -> None:
    """402 with "hardware constraint" in the message: the SDK's QarnotGenericException (qarnot/task.py)."""
    connection = qarnot.Connection(client_token=fake.token, cluster_url=fake.url)
    for constraint in (MinimumRamHardware(32768), MinimumCoreHardware(10)):
        task = connection.create_task("t", "docker-network-ssh", 1)
        task.hardware_constraints = [constraint]
        with pytest.raises(QarnotGenericException, match="hardware constraint"):
            task.submit()
    assert fake.tasks == {}


def test_a_reserved_launch_targets_its_reservation(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    reserve(fake.account)
    result = user.launch(
        pushed_image, "--scheduling", "reserved", "--reservation", "gpu-week", "--command", "true"
    )
    assert result.returncode == 0, result.stderr
    body = fake.body("POST", "/tasks")
    assert (body["schedulingType"], body["targetedReservationName"]) == ("Reserved", "gpu-week")


def test_a_busy_organisation_quota_is_said_and_the_launch_goes_on(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    """The service queues a launch the organisation's quota cannot hold now: said, not refused."""
    assert fake.account.organization is not None
    busy: dict[str, Any] = {"maxInstances": 128, "maxCores": 512, "runningInstancesCount": 128}
    fake.account.organization["flex"] = busy
    result = user.launch(pushed_image, "--command", "true")
    assert result.returncode == 0, result.stderr
    assert (
        "the organisation flex quota cannot hold 1 more instances: 128 of 128 in use, 0 free: the task may "
        "queue until other tasks of the organisation end"
    ) in result.stderr
    assert fake.count("POST", "/tasks") == 1
    account = user.qimg("account").stdout
    assert "organisation flex: instances 128 of 128, cores 0 of 512" in account


def test_max_queue_is_not_cut_short_by_timeout(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    """Queued 4 s, --timeout 3: --max-queue bounds the queue, --timeout counts from leaving it."""
    fake.faults.queue_seconds = 4
    result = run_qimg(
        "run", pushed_image, *LOGIN, "--timeout", "3", "--max-queue", "60", "--command", "true",
        env=user.env, stdin=REGISTRY_PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert fake.body("POST", "/tasks")["maxTimeQueueSeconds"] == 60


def test_without_max_queue_the_queue_is_bounded_by_timeout(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    fake.faults.queue_seconds = 30
    result = run_qimg(
        "run", pushed_image, *LOGIN, "--timeout", "2", "--command", "true", env=user.env,
        stdin=REGISTRY_PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 1
    assert "still queued after 2 s (Submitted)" in result.stderr and "stopped and deleted" in result.stderr
    assert fake.live() == []


def test_a_profile_without_ssh_runs_the_command_as_the_task(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    """Batch: the command is the task's own (through the start script, as the login user, with the
    environment an ssh session has); qimg waits for its end, prints its output, exits 0 on Success."""
    result = user.launch(
        pushed_image, "--profile", "docker-batch", "--env", "GREETING=world",
        "--command", 'echo "hello $GREETING"; id -un; echo warning >&2',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\nalice\n"  # the start script's own lines left out
    assert "warning\n" in result.stderr and "stopped and deleted" in result.stderr
    body = fake.body("POST", "/tasks")
    constants = {item["key"]: item["value"] for item in body["constants"]}
    assert body["profile"] == "docker-batch"
    assert constants["QIMG_COMMAND"] == 'echo "hello $GREETING"; id -un; echo warning >&2'
    assert fake.live() == [] and fake.tasks == {}


def test_a_batch_command_that_fails_fails_the_run(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    result = user.launch(pushed_image, "--profile", "docker-batch", "--command", "echo partial; exit 3")
    assert result.returncode == 1, result.stderr
    assert result.stdout == "partial\n"
    assert "ended Failure" in result.stderr and "stopped and deleted" in result.stderr
    assert fake.tasks == {}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--tunnel", "8888"], "--tunnel needs an ssh login, and --profile docker-batch has no ssh"),
        (["--idle-stop", "1h"], "--idle-stop needs an ssh login"),
        (["--command", "echo ${HOME}"], "QIMG_COMMAND contains '${', which Qarnot replaces"),
    ],
)
def test_what_needs_a_login_is_refused_in_batch(
    pushed_image: str, fake: FakeQarnot, user: User, args: list[str], fragment: str
) -> None:
    result = user.launch(pushed_image, "--profile", "docker-batch", "--command", "true", *args)
    assert_one_line_error(result, 2, fragment)
    assert fake.count("POST", "/tasks") == 0


def test_a_batch_run_takes_inputs_and_brings_its_results_down(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "data.txt").write_text("42\n")
    out = tmp_path / "out"
    result = user.launch(
        pushed_image, "--name", "batch1", "--profile", "docker-batch", "--user", "root",
        "--upload", str(inputs), "--results", str(out),
        "--command", "cat /job/inputs/data.txt; wc -c </job/inputs/data.txt >/job/size",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"
    assert (out / "size").read_text() == "3\n"
    assert fake.tasks == {}
    purged = user.qimg("stop", "--purge", "batch1")  # buckets are kept after a launch, as after any
    assert purged.returncode == 0, purged.stderr
    assert storage.bucket_names() == []
