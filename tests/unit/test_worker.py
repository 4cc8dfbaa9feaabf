"""Worker options checked and turned into a request: environment, secrets, hardware, scheduling,
cluster commands, and Qarnot's limits on constants."""

from __future__ import annotations

import re
from typing import Any

import pytest

from qimg.errors import UsageError
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import Hardware, TaskRequest, instance_command
from qimg.launcher.contract import check_constants
from qimg.launcher.options import WorkerOptions
from qimg.launcher.worker import WorkerPlan, cluster_note, plan

SECRET = "hunter2-value"
ENVIRON = {"API_TOKEN": SECRET, "EMPTY": "", "DOLLAR": "p${ss}"}
BASE = {"DOCKER_REPO": "team/a", "DOCKER_CMD": "/usr/local/sbin/qimg-start", "DOCKER_SSH": "ssh-ed25519 AAAA"}


def planned(local: bool = False, max_queue: int | None = None, **options: Any) -> WorkerPlan:
    backend = registry.LOCAL if local else registry.DEFAULT
    return plan(WorkerOptions(**options), backend=backend, max_queue_seconds=max_queue, environ=ENVIRON)


def request(profile: str = "docker-network-ssh", instances: int = 1) -> TaskRequest:
    return TaskRequest("t", "reg.example.com/team/a:1", profile, instances, dict(BASE), "0123")


def test_environment_and_secrets_become_constants() -> None:
    work = planned(env=("GREETING=hello world", "EMPTY_OK="), secrets=("API_TOKEN",))
    assert work.constants == {
        "GREETING": "hello world", "EMPTY_OK": "", "QARNOT_SECRET__API_TOKEN": SECRET,
        "QIMG_SECRETS": "API_TOKEN",
    }  # fmt: skip
    assert SECRET not in repr(work)  # a plan in a traceback does not show it


def test_hardware_and_scheduling() -> None:
    work = planned(
        cores=4, ram_gb=1.5, gpu=True, ssd=True, hardware=("k1", "k2", "k1"), scheduling="on-demand"
    )
    assert work.hardware == Hardware(4, 1500, True, True, ("k1", "k2"))  # decimal: Qarnot's MB
    assert work.scheduling == "OnDemand"
    assert planned(ram_gb=32).hardware.min_ram_mb == 32000  # as Qarnot's offers: 32000.0
    assert planned(ram_gb=0.1).hardware.min_ram_mb == 100  # not 101: float noise is not rounded up
    assert planned(ram_gb=0.0001).hardware.min_ram_mb == 1  # rounded up: at least what was asked
    assert planned().hardware == Hardware() and planned().scheduling == "Flex"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"env": ("NOEQUALS",)}, "invalid --env 'NOEQUALS': give KEY=VALUE"),
        ({"env": ("9LIVES=1",)}, "invalid --env name '9LIVES'"),
        ({"env": ("lower=1",)}, "invalid --env name 'lower'"),
        ({"env": ("A-B=1",)}, "invalid --env name 'A-B'"),
        ({"env": ("DOCKER_TAG=x",)}, "--env DOCKER_TAG: that name is set by qimg"),
        ({"env": ("INSTANCE_ID=3",)}, "--env INSTANCE_ID: that name is set"),
        ({"env": ("PATH=/tmp",)}, "--env PATH: that name is set"),
        ({"env": ("LD_PRELOAD=/x.so",)}, "--env LD_PRELOAD: that name is set"),
        ({"env": ("DB_PASSWORD=x",)}, "pass --secret DB_PASSWORD"),
        ({"env": ("SSH_KEY=x",)}, "pass --secret SSH_KEY"),
        ({"env": ("A=1", "A=2")}, "--env A: given twice"),
        ({"env": ("API_TOKEN_X=1",), "secrets": ("API_TOKEN",)}, "pass --secret API_TOKEN_X"),
        ({"env": ("TOKEN_HOLDER=1",)}, "pass --secret TOKEN_HOLDER"),
        ({"env": ("A=1",), "secrets": ("A",)}, "--secret A: given twice"),
        ({"secrets": ("MISSING",)}, "--secret MISSING: MISSING is not set"),
        ({"secrets": ("EMPTY",)}, "EMPTY is not set (or empty)"),
        ({"secrets": (f"API_TOKEN={SECRET}",)}, "takes a NAME, not NAME=VALUE"),
        ({"secrets": ("sk-live-123",)}, "invalid --secret: give the NAME"),
        ({"secrets": ("QARNOT_SECRET__X",)}, "--secret QARNOT_SECRET__X: that name is set"),
        ({"env": ("A=${INSTANCE_ID}",)}, "--env A: the value contains '${', which Qarnot replaces"),
        ({"secrets": ("DOLLAR",)}, "--secret DOLLAR: the value contains '${'"),
        ({"cores": 0}, "invalid --cores 0: from 1 to 1024"),
        ({"cores": 5000}, "invalid --cores 5000"),
        ({"ram_gb": 0.0}, "invalid --ram 0.0"),
        ({"ram_gb": -2.0}, "invalid --ram -2.0"),
        ({"ram_gb": float("inf")}, "invalid --ram inf"),
        ({"ram_gb": float("nan")}, "invalid --ram nan"),
        ({"hardware": ("has space",)}, "invalid --hardware 'has space'"),
        ({"hardware": ("",)}, "invalid --hardware ''"),
        ({"scheduling": "OnDemand"}, "invalid --scheduling 'OnDemand'"),
        ({"scheduling": "reserved"}, "--scheduling reserved needs --reservation NAME"),
        ({"reservation": "r1"}, "--reservation 'r1': only with --scheduling reserved"),
        (
            {"reservation": "r1", "scheduling": "on-demand"},
            "--reservation 'r1': only with --scheduling reserved",
        ),
        ({"reservation": "a b", "scheduling": "reserved"}, "invalid --reservation 'a b'"),
    ],
)
def test_bad_values_are_refused_in_one_line_without_the_secret(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as refused:
        planned(**options)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert not any(value in str(refused.value) for value in (SECRET, "sk-live-123", "p${ss}"))


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"cores": 2}, "--cores"), ({"ram_gb": 2.0}, "--ram"), ({"gpu": True}, "--gpu"),
        ({"ssd": True}, "--ssd"),
        ({"hardware": ("k",)}, "--hardware"), ({"scheduling": "on-demand"}, "--scheduling"),
        ({"max_queue": 60}, "--max-queue"), ({"reservation": "r1"}, "--reservation"),
    ],
)  # fmt: skip
def test_qarnot_only_options_are_refused_locally(options: dict[str, Any], option: str) -> None:
    with pytest.raises(UsageError, match=f"{option} is for Qarnot"):
        planned(local=True, **options)


def test_environment_and_secrets_work_locally() -> None:
    assert planned(local=True, env=("A=1",), secrets=("API_TOKEN",)).constants["A"] == "1"


def test_apply_puts_everything_into_the_request() -> None:
    work = planned(env=("A=1",), cores=2, scheduling="reserved", reservation="r1", max_queue=600)
    applied = work.apply(request(), qimg_image=True)
    assert applied.constants == {**BASE, "A": "1"}
    assert (applied.hardware.min_cores, applied.scheduling, applied.max_queue_seconds) == (2, "Reserved", 600)
    assert applied.reservation == "r1"
    assert applied.entries is None and cluster_note(applied) is None


def test_a_cluster_profile_gets_master_and_worker_commands_and_one_entry() -> None:
    applied = planned().apply(request("docker-cluster-network-ssh", 3), qimg_image=True)
    assert "DOCKER_CMD" not in applied.constants
    assert (
        applied.constants["DOCKER_CMD_MASTER"] == applied.constants["DOCKER_CMD_WORKER"] == BASE["DOCKER_CMD"]
    )
    assert applied.entries == (0,)
    assert [instance_command(applied.constants, index, True) for index in range(3)] == [
        BASE["DOCKER_CMD"]
    ] * 3
    assert "2 workers run DOCKER_CMD_WORKER" in (cluster_note(applied) or "")


def test_environment_needs_an_image_qimg_built() -> None:
    with pytest.raises(UsageError, match="not one: build one on it with `qimg build --base"):
        planned(env=("A=1",)).apply(request(), qimg_image=False)
    assert planned().apply(request(), qimg_image=False).constants == BASE  # nothing asked: fine


@pytest.mark.parametrize(
    ("constants", "message"),
    [
        ({f"V{i}": "x" for i in range(151)}, "151 task constants, over Qarnot's limit of 150"),
        ({"A": "x" * 2049}, "A would be 2049 characters"),
        ({"A B": "x"}, "task constant name 'A B'"),
    ],
)
def test_qarnot_limits_on_constants(constants: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        check_constants(constants)
    check_constants({f"V{i}": "x" * 2048 for i in range(150)})  # at the limits: accepted
