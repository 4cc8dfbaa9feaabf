"""qimg-start inside a real container: what it accepts in DOCKER_SSH, what it refuses, and how it stops."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from qimg.launcher.contract import foreign_start
from qimg.launcher.keys.generate import throwaway_key
from tests.docker.conftest import VARIANTS, exec_root

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image(login) -> str:
    login("alice")  # built and proven by compose
    return VARIANTS["alice"].image


@pytest.fixture
def started(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for container_id in ids:
        docker_client.containers.get(container_id).remove(force=True)


def run_start(
    client: docker.DockerClient, image: str, started: list[str], **kwargs: object
) -> tuple[int, str]:
    """Run the image until it exits (within 30 s); its exit code and output."""
    container = client.containers.run(image, detach=True, **kwargs)  # type: ignore[call-overload]
    started.append(container.id)
    status = container.wait(timeout=30)
    return int(status["StatusCode"]), container.logs().decode()


def eventually(read: Callable[[], str], done: Callable[[str], bool] = bool, timeout: float = 20) -> str:
    """What `read` returns once `done` holds for it, or at the timeout (for the assertion to show)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def keygen(tmp_path: Path, name: str, *args: str) -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", name, "-f", str(key), *args], check=True)
    return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("keys")
    ed = keygen(tmp, "ed", "-t", "ed25519")
    rsa1024 = keygen(tmp, "rsa1024", "-t", "rsa", "-b", "1024")
    ed_pub = ed.with_suffix(".pub").read_text().strip()
    kind, body, _ = ed_pub.split(" ", 2)
    return {
        "ed25519": ed_pub,
        "private": ed.read_text(),
        "rsa1024": rsa1024.with_suffix(".pub").read_text().strip(),
        "no type": body,
        "truncated": f"{kind} {body[:30]}",
        "corrupted": f"{kind} {body[:20]}{body[24:]}",
        "two on a line": f"{ed_pub} {ed_pub}",
        "dsa": "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq",
        "null": "null",
        "empty": "",
        "blank lines": "\n  \n",
    }


REFUSED = {
    "private": "is a private key",
    "rsa1024": "1024-bit RSA key",
    "no type": "does not start with a key type",
    "truncated": "not a valid ssh-ed25519 key",
    "corrupted": "not a valid ssh-ed25519 key",
    "two on a line": "several keys",
    "dsa": "DSA key",
    "null": "does not start with a key type",
    "empty": "holds no public key",
    "blank lines": "holds no public key",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_keys_are_refused(
    docker_client, image: str, started: list[str], keys: dict[str, str], case: str
) -> None:
    code, output = run_start(docker_client, image, started, environment={"DOCKER_SSH": keys[case]})
    assert code == 1
    assert f"qimg-start: {'DOCKER_SSH ' if 'DOCKER_SSH' in output else ''}" in output
    assert REFUSED[case] in output
    assert "Server listening" not in output, "sshd must not start with bad keys"
    assert "PRIVATE KEY" not in output.replace("is a private key", ""), "a private key is never echoed"


def test_keys_written_not_appended_deduplicated_and_kept_verbatim(
    docker_client: docker.DockerClient, image: str, started: list[str], keys: dict[str, str], tmp_path: Path
) -> None:  # [11] [12]
    other = keygen(tmp_path, "other", "-t", "ed25519").with_suffix(".pub").read_text().strip()
    hostile = " ".join(other.split()[:2]) + """ x'"$(touch /tmp/pwned)`id`;"""
    given = f"{keys['ed25519']}\r\n{keys['ed25519']}\n\n{hostile}\n"
    container = docker_client.containers.run(image, detach=True, environment={"DOCKER_SSH": given})
    started.append(container.id or "")

    def run(command: str) -> str:
        return exec_root(docker_client, container.id or "", command)

    for _ in range(2):  # the restart runs qimg-start again on the same file system
        written = eventually(lambda: run("cat /home/alice/.ssh/authorized_keys 2>/dev/null || true"))
        assert written == f"{keys['ed25519']}\n{hostile}\n"
        container.restart(timeout=5)
    assert run("ls /tmp/pwned 2>/dev/null || echo absent").strip() == "absent"


def test_host_key_types(docker_client, image: str, started: list[str], keys: dict[str, str]) -> None:  # [10]
    environment = {"DOCKER_SSH": keys["ed25519"], "QIMG_HOST_KEY_TYPES": "dsa"}
    code, output = run_start(docker_client, image, started, environment=environment)
    assert code == 1 and "unsupported host key type 'dsa'" in output
    environment["QIMG_HOST_KEY_TYPES"] = "ed25519 rsa"
    container = docker_client.containers.run(image, detach=True, environment=environment)
    started.append(container.id or "")
    output = eventually(
        lambda: container.logs(stderr=False).decode(), lambda out: out.count("qimg-host-key") == 2
    )
    printed = [line for line in output.splitlines() if "qimg-host-key" in line]
    assert [line.split()[1] for line in printed] == ["ssh-ed25519", "ssh-rsa"]


def test_hard_deadline_stops_the_container(
    docker_client, image: str, started: list[str], keys: dict[str, str]
) -> None:  # [20]
    _, output = run_start(
        docker_client, image, started, environment={"DOCKER_SSH": keys["ed25519"], "QIMG_MAX_SECONDS": "2"}
    )
    assert "hard deadline of 2 s reached" in output
    assert "Server listening" in output


@pytest.mark.parametrize("name", ["QIMG_MAX_SECONDS", "QIMG_DEADLINE"])
@pytest.mark.parametrize("value", ["soon", "-5", "0", "1.5", "1+1"])
def test_bad_deadline_refused(
    docker_client, image: str, started: list[str], keys: dict[str, str], name: str, value: str
) -> None:
    code, output = run_start(
        docker_client, image, started, environment={"DOCKER_SSH": keys["ed25519"], name: value}
    )
    assert code == 1 and f"{name} must be a whole number" in output


def deadline_environment(keys: dict[str, str], seconds_from_now: int) -> dict[str, str]:
    """A task submitted with --max-time 1h, of which all but `seconds_from_now` is gone (negative: past
    the deadline), as for an instance restarted late in its task's life."""
    deadline = int(time.time()) + seconds_from_now
    return {"DOCKER_SSH": keys["ed25519"], "QIMG_MAX_SECONDS": "3600", "QIMG_DEADLINE": str(deadline)}


def test_a_late_start_stops_at_the_task_deadline(
    docker_client, image: str, started: list[str], keys: dict[str, str]
) -> None:
    """Not QIMG_MAX_SECONDS (an hour) after this start: run_start would time out after 30 s."""
    _, output = run_start(docker_client, image, started, environment=deadline_environment(keys, 4))
    assert "Server listening" in output
    (left,) = re.findall(r"hard deadline of (\d+) s reached", output)
    assert 0 < int(left) <= 4


def test_a_start_after_the_deadline_starts_no_sshd(
    docker_client, image: str, started: list[str], keys: dict[str, str]
) -> None:
    code, output = run_start(docker_client, image, started, environment=deadline_environment(keys, -10))
    assert code == 0 and "qimg-start: the task deadline passed" in output
    assert "Server listening" not in output and "qimg-host-key" not in output


def run_foreign_start(
    client: docker.DockerClient, image: str, started: list[str], environment: dict[str, str]
) -> tuple[int, str]:
    """The DOCKER_CMD of images qimg did not build, as sent (with DOCKER_USER), on an image with sshd."""
    start = foreign_start()
    return run_start(client, image, started, command=start.command, user=start.user, environment=environment)


def test_the_foreign_start_stops_at_the_task_deadline(
    docker_client, image: str, started: list[str], keys: dict[str, str]
) -> None:
    _, output = run_foreign_start(docker_client, image, started, deadline_environment(keys, 4))
    assert "qimg-host-key: ssh-ed25519 " in output and "Server listening" in output


def test_the_foreign_start_after_the_deadline_starts_no_sshd(
    docker_client, image: str, started: list[str], keys: dict[str, str]
) -> None:
    code, output = run_foreign_start(docker_client, image, started, deadline_environment(keys, -10))
    assert code == 0 and "the task's deadline has passed" in output
    assert "Server listening" not in output


def test_must_run_as_root(docker_client, image: str, started: list[str], keys: dict[str, str]) -> None:  # [9]
    code, output = run_start(
        docker_client, image, started, user="alice", environment={"DOCKER_SSH": keys["ed25519"]}
    )
    assert code == 1 and "run me as root" in output


def test_private_key_never_sent_in_check(tmp_path: Path) -> None:
    """The throwaway key's public line is what goes to a container; the private key stays here."""
    key = throwaway_key(tmp_path)
    assert key.docker_ssh.startswith("ssh-ed25519 ")
    assert "PRIVATE" not in key.docker_ssh and "PRIVATE" in key.identity.read_text()
