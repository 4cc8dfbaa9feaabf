"""Bad input to `qimg run`: one line, a non-zero exit, and not a single POST /tasks on the fake API."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD, Registry
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker


def private_key(user: User) -> list[str]:
    return ["--key", str(user.home / ".ssh" / "id_ed25519")]


def missing_key(user: User) -> list[str]:
    return ["--key", str(user.home / ".ssh" / "nothing.pub")]


def malformed_key(user: User) -> list[str]:
    bad = user.home / "bad.pub"
    bad.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBroken== me@host\n")
    return ["--key", str(bad)]


CASES: dict[str, tuple[Callable[[User], list[str]], int, str]] = {
    "private key as --key": (private_key, 2, "is a private key"),
    "missing key file": (missing_key, 2, "cannot read it"),
    "malformed key file": (malformed_key, 2, "truncated or damaged"),
    "bad tunnel spec": (lambda _user: ["--tunnel", "88:99:100"], 2, "invalid tunnel"),
    "bad max-time": (lambda _user: ["--max-time", "forever"], 2, "invalid --max-time"),
    "bad name": (lambda _user: ["--name", "Bad Name"], 2, "invalid --name"),
    "connect with command": (lambda _user: ["--connect", "--command", "id"], 2, "--connect"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_sends_nothing(pushed_image: str, fake: FakeQarnot, user: User, case: str) -> None:
    make_args, code, fragment = CASES[case]
    result = user.qimg("run", pushed_image, *LOGIN, *make_args(user), stdin=REGISTRY_PASSWORD + "\n")
    assert_one_line_error(result, code, fragment)
    assert fake.count("POST", "/tasks") == 0


def test_unknown_image(auth_registry: Registry, fake: FakeQarnot, user: User) -> None:
    missing = auth_registry.ref("team/nothing-here:1")
    result = user.qimg("run", missing, *LOGIN, stdin=REGISTRY_PASSWORD + "\n")
    assert_one_line_error(result, 2, "not in its registry")
    assert fake.count("POST", "/tasks") == 0


def test_tunnel_port_in_use(pushed_image: str, fake: FakeQarnot, user: User) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = user.qimg(
            "run", pushed_image, *LOGIN, "--tunnel", f"{port}:8888", stdin=REGISTRY_PASSWORD + "\n"
        )
    assert_one_line_error(result, 2, f"local port {port} is already in use")
    assert fake.count("POST", "/tasks") == 0


@pytest.mark.parametrize(
    ("token", "fragment"), [("", "no Qarnot token"), ("wrong-token", "refused the token")]
)
def test_no_or_wrong_token(
    pushed_image: str, fake: FakeQarnot, user: User, token: str, fragment: str
) -> None:
    env = {**user.env, "QARNOT_CLIENT_TOKEN": token}
    result = run_qimg("run", pushed_image, *LOGIN, env=env, stdin=REGISTRY_PASSWORD + "\n")
    assert_one_line_error(result, 2, fragment)
    assert fake.count("POST", "/tasks") == 0
    assert fake.requests == ([] if not token else [("GET", "/settings")])
    assert "--local" in result.stderr or token
