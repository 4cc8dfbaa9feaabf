"""Every value that reaches a Dockerfile is checked first."""

from __future__ import annotations

import pytest

from qimg.builder.spec import ImageRef, ImageSpec, check_image_ref
from qimg.errors import UsageError


@pytest.mark.parametrize("name", ["alice", "a", "_svc", "bob-2", "x" * 32, "user_1"])
def test_valid_user_names(name: str) -> None:
    assert ImageSpec.create(user=name).user == name


@pytest.mark.parametrize(
    "name",
    ["Root", "root", "a;rm -rf /", "-x", "x" * 33, "", "1abc", "al ice", "alice\n", "sshd", "nobody", "é"],
)
def test_invalid_user_names(name: str) -> None:
    with pytest.raises(UsageError, match="--user"):
        ImageSpec.create(user=name)


@pytest.mark.parametrize("value", [0, -1, 65534, 2**31 - 1, 2**40])
def test_invalid_ids(value: int) -> None:
    with pytest.raises(UsageError, match="--uid"):
        ImageSpec.create(user="alice", uid=value)
    with pytest.raises(UsageError, match="--gid"):
        ImageSpec.create(user="alice", gid=value)


@pytest.mark.parametrize("package", ["vim;id", "a b", "$(id)", "pkg\nRUN id", "", "-y", "'x'", "a`b`"])
def test_invalid_packages(package: str) -> None:
    with pytest.raises(UsageError, match="--package"):
        ImageSpec.create(packages=[package])


def test_packages_are_deduplicated_in_order() -> None:
    assert ImageSpec.create(packages=["vim", "less", "vim"]).packages == ("vim", "less")


@pytest.mark.parametrize(
    "ref",
    [
        "debian:bookworm-slim",
        "ubuntu",
        "127.0.0.1:5000/team/sim:dev",
        "registry.example.com/a/b/c",
        "localhost/x@sha256:" + "a" * 64,
        "[::1]:5000/x:1",
    ],
)
def test_valid_image_refs(ref: str) -> None:
    assert check_image_ref(ref, "--base") == ref


@pytest.mark.parametrize(
    "ref", ["Debian", "debian:", "debian:bookworm slim", "a//b", "x:y:z", "", "debian\nRUN id", ":tag", "a/"]
)
def test_invalid_image_refs(ref: str) -> None:
    with pytest.raises(UsageError, match="--base"):
        check_image_ref(ref, "--base")


def test_root_login_defaults() -> None:
    assert ImageSpec.create().root_login
    assert ImageSpec.create().allowed_users == ("root",)
    assert not ImageSpec.create(user="alice").root_login
    assert ImageSpec.create(user="alice").allowed_users == ("alice",)
    assert ImageSpec.create(user="alice", root_login=True).allowed_users == ("alice", "root")


def test_nobody_could_log_in() -> None:
    with pytest.raises(UsageError, match="nobody could log in"):
        ImageSpec.create(root_login=False)


def test_sudo_needs_a_user() -> None:
    with pytest.raises(UsageError, match="--sudo"):
        ImageSpec.create(sudo=True)


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "srv"),
    [
        ("ubuntu", "docker.io", "library/ubuntu", "latest", "https://docker.io"),
        ("team/sim:dev", "docker.io", "team/sim", "dev", "https://docker.io"),
        ("docker.io/ubuntu:24.04", "docker.io", "library/ubuntu", "24.04", "https://docker.io"),
        ("127.0.0.1:5000/team/alice:e2e", "127.0.0.1:5000", "team/alice", "e2e", "http://127.0.0.1:5000"),
        ("localhost/alice", "localhost", "alice", "latest", "http://localhost"),
        (
            "registry.example.com/a/b/c:1",
            "registry.example.com",
            "a/b/c",
            "1",
            "https://registry.example.com",
        ),
    ],
)
def test_image_ref(ref: str, registry: str, repository: str, tag: str, srv: str) -> None:
    parsed = ImageRef.parse(ref, "IMAGE")
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.server_url) == (
        registry,
        repository,
        tag,
        srv,
    )
