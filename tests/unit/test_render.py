"""Rendered Dockerfiles for every family and option combination, held to hadolint."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from qimg.builder import labels
from qimg.builder.render import render_dockerfile, render_sshd_config, write_context
from qimg.builder.spec import Distro, ImageSpec
from tests.helpers import tool

BASES = {Distro.DEBIAN: "debian:bookworm-slim", Distro.RHEL: "rockylinux:9", Distro.ALPINE: "alpine:3.20"}
USERS: list[dict[str, object]] = [
    {},
    {"user": "alice"},
    {"user": "alice", "uid": 1234, "gid": 2345, "sudo": True},
    {"user": "bob", "root_login": True, "packages": ["less", "curl"]},
]
VARIANTS = [
    pytest.param(distro, options, id=f"{distro.value}-{i}")
    for (distro, (i, options)) in itertools.product(Distro, enumerate(USERS))
]


def spec_for(distro: Distro, options: dict[str, object]) -> ImageSpec:
    return ImageSpec.create(base=BASES[distro], distro=distro, **options)  # type: ignore[arg-type]


def instructions(dockerfile: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    joined = dockerfile.replace("\\\n", " ")
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize(("distro", "options"), VARIANTS)
def test_render_structure(distro: Distro, options: dict[str, object]) -> None:
    spec = spec_for(distro, options)
    steps = instructions(render_dockerfile(spec))
    keywords = [step.split()[0] for step in steps]
    assert keywords == ["FROM", "RUN", "COPY", "COPY", "COPY", "COPY", "RUN", "EXPOSE", "CMD", "LABEL"]
    assert steps[0] == f"FROM {spec.base}"
    assert "openssh-server" in steps[1].split()
    assert "rm -f /etc/ssh/ssh_host_*" in steps[1], "package host keys must not stay in a layer"
    for package in spec.packages:
        assert package in steps[1].split()
    assert ("sudo" in steps[1].split()) == spec.sudo
    setup = json.loads(steps[6].removeprefix("RUN "))
    assert setup[:2] == ["/usr/local/sbin/qimg-setup", spec.login_user]
    if spec.user:
        assert setup[2:4] == [str(spec.uid), str(spec.gid)]
        assert ("sudo" in setup) == spec.sudo
    assert steps[8] == 'CMD ["/usr/local/sbin/qimg-start"]'
    assert steps[-1].startswith("LABEL "), "labels come last, so that they never invalidate the cache"


def test_debian_install_layer_is_minimal() -> None:
    run = instructions(render_dockerfile(spec_for(Distro.DEBIAN, {"user": "alice"})))[1]
    assert "--no-install-recommends" in run
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert "apt-get clean" in run


def test_install_layer_is_shared_between_users() -> None:
    """The expensive layer depends on the packages only, so other users reuse the cache."""
    users: list[dict[str, object]] = [{}, {"user": "alice"}, {"user": "bob", "uid": 2000}]
    runs = {instructions(render_dockerfile(spec_for(Distro.DEBIAN, options)))[1] for options in users}
    assert len(runs) == 1


@pytest.mark.parametrize(("distro", "options"), VARIANTS)
def test_labels(distro: Distro, options: dict[str, object]) -> None:
    spec = spec_for(distro, options)
    found = labels.write(spec)
    assert found["io.qimg.user"] == spec.login_user
    assert found["io.qimg.distro"] == distro.value
    assert found["io.qimg.start"] == "/usr/local/sbin/qimg-start"
    for key, value in found.items():
        assert f"{key}={json.dumps(value)}" in render_dockerfile(spec)


@pytest.mark.parametrize(("distro", "options"), VARIANTS)
def test_sshd_config(distro: Distro, options: dict[str, object]) -> None:
    spec = spec_for(distro, options)
    config = dict(
        line.split(" ", 1) for line in render_sshd_config(spec).splitlines() if line and line[0] != "#"
    )
    assert config["PasswordAuthentication"] == "no"
    assert config["PermitEmptyPasswords"] == "no"
    assert config["KbdInteractiveAuthentication"] == "no"
    assert config["AllowTcpForwarding"] == "local"
    assert config["X11Forwarding"] == "no"
    assert config["PermitRootLogin"] == ("prohibit-password" if spec.root_login else "no")
    assert config["AllowUsers"].split() == list(spec.allowed_users)
    for key in ("KexAlgorithms", "MACs", "HostKeyAlgorithms"):
        assert config[key].startswith("-"), "only the removal form works across OpenSSH versions"
    for weak in ("ecdh-sha2-nistp256", "hmac-sha1", "ecdsa-sha2-nistp256"):
        assert weak in render_sshd_config(spec)


def test_write_context_modes(tmp_path: Path) -> None:
    write_context(ImageSpec.create(user="alice"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Dockerfile", "qimg-idle.sh", "qimg-setup.sh", "qimg-start.sh", "sshd-qimg.conf",
    ]  # fmt: skip
    for script in ("qimg-start.sh", "qimg-idle.sh"):
        assert (tmp_path / script).stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "sshd-qimg.conf").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(("distro", "options"), VARIANTS)
def test_hadolint_clean(distro: Distro, options: dict[str, object], tmp_path: Path) -> None:
    """Zero findings at any level. Package pinning rules are ignored inline, with the reason written there."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(render_dockerfile(spec_for(distro, options)))
    result = subprocess.run(
        [tool("hadolint"), "--no-fail", "-f", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == []


def test_hadolint_would_catch_a_missing_cleanup(tmp_path: Path) -> None:
    """The lint is live: a Dockerfile without the apt clean-up is reported."""
    dockerfile = tmp_path / "Dockerfile"
    text = render_dockerfile(spec_for(Distro.DEBIAN, {"user": "alice"}))
    dockerfile.write_text(
        text.replace("&& rm -rf /var/lib/apt/lists/*", "").replace("--no-install-recommends", "")
    )
    result = subprocess.run(
        [tool("hadolint"), "--no-fail", "-f", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {finding["code"] for finding in json.loads(result.stdout)} >= {"DL3009", "DL3015"}
