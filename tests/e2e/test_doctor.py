"""`qimg doctor` against the fake Qarnot API: its table says what the fake does, in each reading the
fake can be set to, and no task or bucket is left, whether it ends, is declined or is interrupted."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

from qimg.launcher.doctor import ProbeOutput, parse_output, probe_command
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import Registry
from tests.fakes.s3 import S3
from tests.helpers import assert_one_line_error, run_qimg, run_qimg_on_terminal

pytestmark = pytest.mark.docker
SECRET = "QARNOT_SECRET__QIMG_DOCTOR_PROBE"
RAM_OFFERS = (32000.0, 128000.0)  # MB, as Qarnot lists them


@pytest.fixture(scope="session")
def probe_image(open_registry: Registry, docker_client: docker.DockerClient) -> str:
    """A small image with sh, stat, grep and dd in the open registry (the tests reach no Docker Hub)."""
    repository, tag = open_registry.ref("library/doctor-probe"), f"session-{os.getpid()}"
    docker_client.images.get("debian:bookworm-slim").tag(repository, tag)
    try:
        for line in docker_client.api.push(repository, tag, stream=True, decode=True):
            assert "error" not in line, line
    finally:
        docker_client.images.remove(f"{repository}:{tag}")
    return f"{repository}:{tag}"


@pytest.fixture
def account(fake: FakeQarnot, storage: S3) -> FakeQarnot:
    """The fake with storage, RAM offers as Qarnot lists them (these, in place of the fake's own), and
    uploads slow enough to be seen."""
    ram = "MinimumRamHardwareConstraint"
    fake.account.hardware = [offer for offer in fake.account.hardware if offer["discriminator"] != ram] + [
        {"discriminator": ram, "minimumMemoryMB": mb} for mb in RAM_OFFERS
    ]
    fake.upload_seconds = 4.0
    return fake


def doctor(user: User, image: str, *args: str) -> subprocess.CompletedProcess[str]:
    return user.qimg("doctor", "--image", image, "--timeout", "120", *args, timeout=300)


def test_the_harsh_readings_are_reported_as_the_fake_gives_them(
    account: FakeQarnot, user: User, probe_image: str
) -> None:
    account.workdir_mode = 0o755
    account.secret_bare_name = False
    account.unoffered_ram = "refuse"
    account.faults.listing_lag = 1.5
    result = doctor(user, probe_image, "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert "creates 3 tasks" in result.stderr and "balance: 42.50 EUR" in result.stderr
    report = json.loads(result.stdout)
    checks = report["checks"]
    assert checks["workdir"] == {
        "answer": "owned by uid 0 (root), mode 755; the command ran as uid 0", "known": True,
        "exists": True, "uid": 0, "owner": "root", "mode": "755", "run_uid": 0,
    }  # fmt: skip
    assert checks["secret"]["names"] == [SECRET] and checks["secret"]["bare_name"] is False
    assert checks["secret"]["answer"] == f"{SECRET} is in the environment as {SECRET}"
    ram = checks["unoffered_ram"]
    assert ram["outcome"] == "refused" and ram["asked_mb"] == 129000 and ram["offers_mb"] == list(RAM_OFFERS)
    assert "hardware constraint" in ram["message"]
    aborted = checks["abort_with_results"]
    assert aborted["states"] == ["UploadingResults", "Cancelled"] and aborted["results_uploaded"] is True
    deleted = checks["delete_while_uploading"]
    assert deleted == {
        "answer": "accepted; then PendingDelete, then gone; the results did not reach the bucket",
        "known": True, "accepted": True, "states": ["PendingDelete"], "gone": True, "results_uploaded": False,
    }  # fmt: skip
    listing = checks["tag_listing"]
    assert listing["looks"] > 1 and listing["seconds"] >= 1.5
    # The refused task was never created: two tasks, each deleted, their buckets too (the fixtures check).
    assert len(report["tasks"]) == 2 and report["left"] == []
    assert account.count("POST", "/tasks") == 3 and account.tasks == {}
    bodies = [body for method, path, body in account.bodies if (method, path) == ("POST", "/tasks")]
    assert all(any(tag.startswith("qimg-launch-") for tag in body["tags"]) for body in bodies)
    assert bodies[2]["hardwareConstraints"] == [
        {"discriminator": "MinimumRamHardwareConstraint", "minimumMemoryMB": 129000}
    ]
    assert all(body["profile"] == "docker-batch" for body in bodies)


def test_the_other_readings_are_reported_too_in_its_table(
    account: FakeQarnot, user: User, probe_image: str
) -> None:
    account.unoffered_ram = "queue"
    account.workdir_mode = 0o777  # the secret under both names, no listing lag: the defaults
    result = run_qimg(
        "doctor", "--image", probe_image, "--timeout", "120", "--yes", env={**user.env, "COLUMNS": "200"},
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {
        "/job (DOCKER_WORKDIR) when a task starts": "owned by uid 0 (root), mode 777; the command ran as "
        "uid 0",
        "a QARNOT_SECRET__ constant in the container": f"{SECRET} is in the environment as {SECRET} and "
        "QIMG_DOCTOR_PROBE",
        "a RAM value no offer has": "129000 MB accepted: still Submitted after 15 s (it waits in the queue)",
        "states after an abort with results": "UploadingResults, then Cancelled; the results reached the "
        "bucket",
        "DELETE during UploadingResults": "accepted; then PendingDelete, then gone; the results did not "
        "reach the bucket",
        "a new task in its tag's listing": "listed at the first look",
    }
    shown = [line.strip("│ ") for line in result.stdout.splitlines()]
    for check, answer in rows.items():
        assert any(line.startswith(check) and line.endswith(answer) for line in shown), (check, result.stdout)
    assert "3 tasks created and deleted; credits spent: " in result.stdout
    assert account.tasks == {}


def test_without_a_terminal_it_needs_yes_and_asks_nothing(
    fake: FakeQarnot, user: User, probe_image: str
) -> None:
    assert_one_line_error(doctor(user, probe_image), 2, "creates billed tasks", "--yes")
    assert fake.requests == []


def test_the_cost_is_shown_and_no_creates_nothing(account: FakeQarnot, user: User, probe_image: str) -> None:
    code, shown = run_qimg_on_terminal("doctor", "--image", probe_image, env=user.env, answer="n")
    assert code == 1, shown
    assert "qimg doctor creates 3 tasks" in shown and "129000 MB of RAM" in shown
    assert "balance: 42.50 EUR" in shown and "Create them? [y/N]" in shown
    assert "qimg: error: not confirmed: no task was created" in shown
    assert account.count("POST", "/tasks") == 0 and account.tasks == {}  # and no bucket: `storage` checks


def _wait_for(fake: FakeQarnot, state: str) -> None:
    deadline = time.monotonic() + 120
    while not any(task.state == state for task in list(fake.tasks.values())):
        assert time.monotonic() < deadline, f"no task reached {state}"
        time.sleep(0.05)


@pytest.mark.parametrize("moment", ["FullyExecuting", "UploadingResults", "Submitted"])
def test_ctrl_c_at_any_point_leaves_no_task(
    account: FakeQarnot, user: User, probe_image: str, moment: str
) -> None:
    if moment == "Submitted":  # the RAM probe, waiting in the queue
        account.unoffered_ram = "queue"
    process = user.background("doctor", "--image", probe_image, "--timeout", "120", "--yes")
    try:
        if moment == "Submitted":
            deadline = time.monotonic() + 120
            while not any(task.held for task in list(account.tasks.values())):
                assert time.monotonic() < deadline and process.poll() is None, "the RAM probe never came"
                time.sleep(0.05)
        else:
            _wait_for(account, moment)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted by SIGINT" in stderr and "deleted" in stderr
    assert account.tasks == {}  # every task it created is deleted (and its bucket: `storage` checks)


def test_the_probe_reads_the_same_under_busybox(e2e_image: str, docker_client: docker.DockerClient) -> None:
    """The default image is busybox: the probe's script, with busybox's applets only, prints what the
    parser reads (alice's image has busybox, and a /job is made root's, 0755)."""
    nonce = secrets.token_hex(16)
    setup = 'mkdir -m 755 /job /bb && busybox --install -s /bb && PATH=/bb exec sh -c "$PROBE"'
    container = docker_client.containers.run(
        e2e_image, ["busybox", "sh", "-c", setup], user="root", detach=True,
        environment={"PROBE": probe_command(nonce), SECRET: nonce}, labels={"io.qimg.test": "doctor"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (found := parse_output(container.logs(stdout=True, stderr=False).decode())) is None:
            assert time.monotonic() < deadline, container.logs().decode()
            time.sleep(0.2)
    finally:
        container.remove(force=True)
    assert found == ProbeOutput(0, (0, "755", "root"), (SECRET,))


def test_a_probe_that_fails_leaves_its_checks_unknown_and_nothing_behind(
    account: FakeQarnot, user: User, open_registry: Registry
) -> None:
    account.unoffered_ram = "refuse"
    result = doctor(user, open_registry.ref("library/no-such-image:1"), "--yes", "--json")
    assert result.returncode == 1, result.stderr
    checks = json.loads(result.stdout)["checks"]
    for check in ("workdir", "secret", "abort_with_results"):
        assert checks[check]["known"] is False
        assert checks[check]["answer"].startswith("unknown: task doctor-results-"), checks[check]
        assert "is Failure without having printed what it found: PullFailed" in checks[check]["answer"]
    assert checks["delete_while_uploading"]["known"] is False
    assert checks["unoffered_ram"]["outcome"] == "refused"  # the probe that needs no image still answers
    assert account.tasks == {}


def test_a_probe_task_that_cannot_be_deleted_keeps_its_bucket(
    account: FakeQarnot, user: User, probe_image: str, storage: S3, tmp_path: Path
) -> None:
    """A task whose DELETE fails may still run and write its results: its bucket is not deleted under
    it, and the report says so and how to delete both later."""
    account.unoffered_ram = "refuse"
    process = user.background("doctor", "--image", probe_image, "--timeout", "120", "--yes", "--json")
    try:
        deadline = time.monotonic() + 120
        while not account.tasks:
            assert time.monotonic() < deadline and process.poll() is None, "no probe task came"
            time.sleep(0.05)
        (first,) = list(account.tasks.values())
        account.faults.delete_refused.add(first.uuid)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    left = json.loads(stdout)["left"]
    assert any(f"could not stop task {first.uuid}" in line for line in left), (left, stderr)
    assert any(f"bucket {first.result_bucket} kept" in line for line in left), (left, stderr)
    assert first.result_bucket in storage.bucket_names()
    account.faults.delete_refused.clear()
    for command in (("stop", "--all"), ("fetch", first.result_bucket, str(tmp_path / "probe")),
                    ("stop", "--all", "--purge")):  # fmt: skip
        done = user.qimg(*command)  # as the report says
        assert done.returncode == 0, (command, done.stderr)
    assert storage.bucket_names() == [], done.stderr
