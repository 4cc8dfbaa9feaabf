"""A task used as a worker, through the real SDK against the fake API: environment and secrets seen
from ssh sessions (and the secret nowhere else), hardware and scheduling as the SDK sends them,
cluster profiles reached through their master, and the account's checks before any task exists."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from typing import cast

import docker
import pytest

from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker
SECRET = "s3cr3t-'quoted' value"  # a quote, a space: the value survives the start script's quoting
CLUSTER = "docker-cluster-network-ssh"


@pytest.fixture
def kept(user: User) -> Iterator[list[str]]:
    """Names of tasks a test keeps: stopped afterwards even when the test fails half-way."""
    names: list[str] = []
    yield names
    for name in names:
        user.qimg("stop", name)


def test_the_body_of_each_option_as_the_sdk_sends_it(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    result = user.launch(
        pushed_image, "--command", "true", "--env", "GREETING=hello world", "--secret", "API_TOKEN",
        "--cores", "16", "--ram", "32", "--gpu", "--ssd", "--hardware", "16c-128g-amd",
        "--scheduling", "on-demand", "--max-queue", "10m", "--profile", "docker-nvidia-network-ssh",
        env={"API_TOKEN": SECRET},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = fake.body("POST", "/tasks")
    assert body["hardwareConstraints"] == [
        {"discriminator": "MinimumCoreHardwareConstraint", "coreCount": 16},
        {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 32000},  # decimal, as offered
        {"discriminator": "GpuHardwareConstraint"},
        {"discriminator": "SSDHardwareConstraint"},
        {"discriminator": "SpecificHardwareConstraint", "specificationKey": "16c-128g-amd"},
    ]
    assert body["schedulingType"] == "OnDemand" and body["maxTimeQueueSeconds"] == 600
    constants = {item["key"]: item["value"] for item in body["constants"]}
    assert constants["GREETING"] == "hello world"
    assert constants["QARNOT_SECRET__API_TOKEN"] == SECRET and constants["QIMG_SECRETS"] == "API_TOKEN"
    assert "API_TOKEN" not in constants  # only under the write-only name
    assert SECRET not in result.stdout + result.stderr


def test_without_options_the_body_asks_for_any_machine_on_flex(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    assert user.launch(pushed_image, "--command", "true").returncode == 0
    body = fake.body("POST", "/tasks")
    assert body["hardwareConstraints"] == [] and body["schedulingType"] == "Flex"
    assert "maxTimeQueueSeconds" not in body
    secret_keys = {item["key"] for item in body["constants"] if item["key"].startswith("QARNOT_SECRET__")}
    assert secret_keys == {"QARNOT_SECRET__DOCKER_REGISTRY_PASSWORD"}  # the registry's, no user secret
    assert "QIMG_SECRETS" not in {item["key"] for item in body["constants"]}


def test_environment_and_secret_in_ssh_sessions_and_nowhere_else(
    pushed_image: str, fake: FakeQarnot, user: User, docker_client: docker.DockerClient, kept: list[str]
) -> None:
    kept.append("worker")
    launched = user.launch(
        pushed_image, "--name", "worker", "--env", "GREETING=hello world", "--secret", "API_TOKEN",
        env={"API_TOKEN": SECRET},
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    (task,) = fake.tasks.values()
    seen = user.qimg("ssh", "worker", "--", 'echo "[$GREETING]"; echo "[$API_TOKEN]"')
    assert seen.stdout.splitlines() == ["[hello world]", f"[{SECRET}]"], seen.stderr
    interactive = user.qimg("ssh", "worker", "--", "bash", "-lc", "'printenv API_TOKEN'")
    assert interactive.stdout.strip() == SECRET  # bash login shells too, and exported

    container = docker_client.containers.get(task.instances[0].container_id)

    def shell(user_name: str, command: str) -> tuple[int, str]:
        code, out = container.exec_run(["sh", "-lc", command], user=user_name)
        return int(code or 0), cast(bytes, out).decode()

    modes = shell("root", "stat -c '%a %U' /home/alice/.config/qimg/secrets /home/alice/.config/qimg")[1]
    assert modes.splitlines() == ["600 alice", "700 alice"]
    assert shell("root", f"grep -rlF {shlex.quote(SECRET)} /etc /run /tmp /root")[0] == 1  # found nowhere
    assert SECRET not in shell("root", "tr '\\0' '\\n' </proc/1/environ")[1]  # sshd started without it
    assert shell("root", "useradd -m bob")[0] == 0
    # bob logs in (`su -`: a login session, not the container's own environment that `docker exec` has).
    code, out = shell("root", """su - bob -c 'echo "[$API_TOKEN]"; cat /home/alice/.config/qimg/secrets'""")
    assert code != 0 and out.startswith("[]\n") and "Permission denied" in out and SECRET not in out

    # Not in what the platform shows of the task, nor in anything qimg or the task printed.
    assert fake.visible_constants(task)["QARNOT_SECRET__API_TOKEN"] == "[SECRET]"
    shown = [
        launched.stdout, launched.stderr, seen.stderr, json.dumps(fake.document(task)),
        fake.output(task, None, stdout=True), fake.output(task, None, stdout=False),
        *(user.qimg(*command).stdout for command in (("logs", "worker"), ("ls", "--json"), ("ls",))),
    ]  # fmt: skip
    assert not [text for text in shown if SECRET in text]
    assert user.qimg("stop", "worker").returncode == 0


def test_a_cluster_task_is_reached_through_its_master(
    pushed_image: str, fake: FakeQarnot, user: User, docker_client: docker.DockerClient, kept: list[str]
) -> None:
    kept.append("mpi")
    launched = user.launch(pushed_image, "--name", "mpi", "--profile", CLUSTER, "--instances", "3", "--json")
    assert launched.returncode == 0, launched.stderr
    note = "instance 0 is the master, the only one forwarded; ssh and --command reach it alone; 2 workers"
    assert note in launched.stderr
    (only,) = json.loads(launched.stdout)["instances"]
    assert only["index"] == 0 and only["alias"] == "qimg-mpi"
    constants = {item["key"]: item["value"] for item in fake.body("POST", "/tasks")["constants"]}
    assert "DOCKER_CMD" not in constants
    assert constants["DOCKER_CMD_MASTER"] == constants["DOCKER_CMD_WORKER"] == "/usr/local/sbin/qimg-start"

    (task,) = fake.tasks.values()
    workers = [docker_client.containers.get(i.container_id) for i in task.instances[1:]]
    assert [w.status for w in workers] == ["running", "running"]  # the workers run, unforwarded
    assert not any((w.attrs["NetworkSettings"]["Ports"] or {}).get("22/tcp") for w in workers)
    assert user.qimg("ssh", "mpi", "--", "echo", "$INSTANCE_ID").stdout.split() == ["0"]

    listed = user.qimg("ls", "--json")
    (row,) = json.loads(listed.stdout)["tasks"]
    assert row["profile"] == CLUSTER and row["entry_instances"] == [0] and len(row["endpoints"]) == 1
    assert "(master of 3)" in user.qimg("ls").stdout
    assert user.qimg("stop", "mpi").returncode == 0


def test_a_local_cluster_runs_the_qarnot_way(e2e_image: str, user: User) -> None:
    result = run_qimg(
        "run", "--local", e2e_image, "--profile", CLUSTER, "--instances", "2", "--env", "ROLE=member",
        "--secret", "API_TOKEN", "--command", 'echo "$INSTANCE_ID $ROLE [$API_TOKEN]"',
        env={**user.env, "API_TOKEN": SECRET},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"0 member [{SECRET}]"]  # the master alone
    assert SECRET not in result.stderr


def test_an_unknown_profile_is_refused_with_the_closest_names(
    pushed_image: str, fake: FakeQarnot, user: User
) -> None:
    result = user.launch(pushed_image, "--profile", "docker-network-shh")
    assert_one_line_error(result, 2, "--profile docker-network-shh", "did you mean docker-network-ssh")
    assert fake.count("POST", "/tasks") == 0


@pytest.mark.parametrize(
    ("setup", "args", "fragments"),
    [
        (lambda a: a.flex.update(maxInstances=2), ["--instances", "3"],
         ["flex quota cannot hold 3 more instances", "0 of 2 in use, 2 free"]),
        (lambda a: a.flex.update(maxCores=20), ["--instances", "2", "--cores", "16"],
         ["flex quota cannot hold 32 more cores", "0 of 20 in use, 20 free"]),
        (lambda a: a.on_demand.update(maxInstances=0), ["--scheduling", "on-demand"],
         ["on-demand quota cannot hold 1 more instances: 0 of 0 in use"]),
        (lambda a: setattr(a, "max_tasks", 0), [], ["holds 0 of its 0 tasks"]),
        (lambda a: None, ["--scheduling", "reserved", "--reservation", "r1"],
         ["the account has no reservation"]),
        (lambda a: a.reserved.append({"reservationName": "r1", "machineKey": "k", "maxInstances": 1,
                                      "maxCores": 8}),
         ["--scheduling", "reserved", "--reservation", "r1", "--instances", "2"],
         ["reservation r1 quota cannot hold 2 more"]),
    ],
    ids=["flex-instances", "flex-cores", "on-demand", "tasks", "no-reservation", "reservation-full"],
)  # fmt: skip
def test_a_launch_the_quota_cannot_hold_is_refused(
    pushed_image: str, fake: FakeQarnot, user: User, setup, args: list[str], fragments: list[str]
) -> None:
    setup(fake.account)
    result = user.launch(pushed_image, *args)
    assert_one_line_error(result, 2, *fragments)
    assert fake.count("POST", "/tasks") == 0


BAD: dict[str, tuple[list[str], str]] = {
    "env without =": (["--env", "GREETING"], "invalid --env 'GREETING': give KEY=VALUE"),
    "env bad name": (["--env", "1X=a"], "invalid --env name '1X'"),
    "env lower case": (["--env", "greeting=a"], "invalid --env name 'greeting'"),
    "env reserved": (["--env", "DOCKER_REPO=x"], "--env DOCKER_REPO: that name is set by qimg"),
    "env secret-like": (["--env", "HF_TOKEN=x"], "pass --secret HF_TOKEN"),
    "env twice": (["--env", "A=1", "--env", "A=2"], "--env A: given twice"),
    "env substituted": (["--env", "A=${INSTANCE_ID}"], "--env A: the value contains '${'"),
    "secret unset": (["--secret", "NOT_SET_ANYWHERE"], "NOT_SET_ANYWHERE is not set"),
    "secret with value": (["--secret", f"API_TOKEN={SECRET}"], "takes a NAME, not NAME=VALUE"),
    "secret bad name": (["--secret", "not-a-name"], "invalid --secret: give the NAME"),
    "secret reserved": (["--secret", "QIMG_X"], "--secret QIMG_X: that name is set"),
    "cores zero": (["--cores", "0"], "invalid --cores 0"),
    "cores text": (["--cores", "many"], "Invalid value for '--cores'"),
    "ram zero": (["--ram", "0"], "invalid --ram 0.0"),
    "ram nan": (["--ram", "nan"], "invalid --ram nan"),
    "hardware bad key": (["--hardware", "a b"], "invalid --hardware 'a b'"),
    "hardware unknown key": (["--hardware", "16c-128g-amx"], "did you mean 16c-128g-amd"),
    "scheduling": (["--scheduling", "cheap"], "invalid --scheduling 'cheap'"),
    "max-queue": (["--max-queue", "forever"], "invalid --max-queue 'forever'"),
    "max-queue zero": (["--max-queue", "0"], "invalid --max-queue '0'"),
    "gpu locally": (["--local", "--gpu"], "--gpu is for Qarnot"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_send_nothing(pushed_image: str, fake: FakeQarnot, user: User, case: str) -> None:
    args, fragment = BAD[case]
    result = user.launch(pushed_image, *args, env={"API_TOKEN": SECRET})
    assert_one_line_error(result, 2, fragment)
    assert SECRET not in result.stderr
    assert fake.count("POST", "/tasks") == 0


def test_profiles_hardware_and_account(fake: FakeQarnot, user: User) -> None:
    profiles = json.loads(user.qimg("profiles", "--json").stdout)["profiles"]
    assert {"name": CLUSTER, "ssh": True, "cluster": True, "gpu": False} in profiles
    assert {"name": "docker-batch", "ssh": False, "cluster": False, "gpu": False} in profiles
    assert {"name": "docker-nvidia-network-ssh", "ssh": True, "cluster": False, "gpu": True} in profiles
    assert re.search(r"\n  docker-network-ssh +ssh\n", user.qimg("profiles").stdout)

    hardware = json.loads(user.qimg("hardware", "--json").stdout)["hardware"]
    assert {
        "kind": "SpecificHardwareConstraint",
        "value": "16c-128g-amd",
        "option": "--hardware 16c-128g-amd",
    } in hardware
    assert {"kind": "GpuHardwareConstraint", "value": "", "option": "--gpu"} in hardware
    assert len(hardware) == len(fake.account.hardware)

    fake.account.flex.update(maxInstances=10, maxCores=40)
    account = json.loads(user.qimg("account", "--json").stdout)
    assert account["balance"] == 42.5 and (account["tasks"], account["max_tasks"]) == (0, 50)
    assert {
        "name": "flex",
        "max_instances": 10,
        "running_instances": 0,
        "max_cores": 40,
        "running_cores": 0,
    } in account["quotas"]
    text = user.qimg("account").stdout
    assert "balance: 42.50 EUR" in text and "flex: instances 0 of 10, cores 0 of 40" in text

    fake.faults.credits_unavailable = True  # the balance is not worth failing for
    slow = user.qimg("account", "--json")
    assert slow.returncode == 0 and json.loads(slow.stdout)["balance"] is None


def test_an_unreadable_account_reply_is_one_line(fake: FakeQarnot, user: User) -> None:
    fake.account.profiles = {"not": "a list"}  # type: ignore[assignment]
    assert_one_line_error(user.qimg("profiles"), 1, "listing profiles", "not a list")


@pytest.mark.parametrize("passed_as", ["QARNOT_SECRET__API_TOKEN", "API_TOKEN"])
def test_the_start_script_takes_a_secret_under_either_name(
    e2e_image: str, user: User, docker_client: docker.DockerClient, passed_as: str
) -> None:
    environment = {"DOCKER_SSH": user.public_key.read_text(), "QIMG_SECRETS": "API_TOKEN", passed_as: SECRET}
    container = docker_client.containers.run(e2e_image, detach=True, environment=environment)
    try:
        deadline = time.monotonic() + 30
        while "sshd starting" not in container.logs().decode() and time.monotonic() < deadline:
            time.sleep(0.1)
        code, out = container.exec_run(["su", "-", "alice", "-c", 'printf "[%s]" "$API_TOKEN"'], user="root")
        assert (code, cast(bytes, out).decode()) == (0, f"[{SECRET}]")
        code, out = container.exec_run(["grep", "-c", "API_TOKEN", "/etc/profile.d/qimg-env.sh"])
        assert cast(bytes, out).decode().strip() == "0"  # neither name in the dump for every user
    finally:
        container.remove(force=True)


@pytest.mark.parametrize(
    ("secrets", "message"),
    [("API_TOKEN", "secret API_TOKEN did not reach the container"), ("api-token", "is not an upper-case")],
)
def test_the_start_script_stops_on_a_secret_it_cannot_hand_over(
    e2e_image: str, user: User, docker_client: docker.DockerClient, secrets: str, message: str
) -> None:
    environment = {"DOCKER_SSH": user.public_key.read_text(), "QIMG_SECRETS": secrets}
    container = docker_client.containers.run(e2e_image, detach=True, environment=environment)
    try:
        assert container.wait(timeout=30)["StatusCode"] == 1
        assert message in container.logs().decode()
    finally:
        container.remove(force=True)
