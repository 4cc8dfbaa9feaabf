"""A launch's options checked before anything is created."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from qimg.builder import labels
from qimg.builder.spec import ImageRef, ImageSpec
from qimg.engine_transport import DEFAULT_HOST, LOCAL, EngineTarget
from qimg.errors import DockerUnavailable, UsageError
from qimg.launcher import contract
from qimg.launcher.backends import registry
from qimg.launcher.options import LaunchOptions, check_timeout
from qimg.launcher.plan import LaunchPlan, parse_duration, plan_launch
from qimg.registry_api import RemoteImage

if TYPE_CHECKING:
    from qimg.engine_api import Engine


def test_durations() -> None:
    assert [parse_duration(text, "--max-time") for text in ("90", "90s", "45m", "12h", "2d")] == [
        90, 90, 2700, 43200, 172800,
    ]  # fmt: skip
    for bad in ("0", "1.5h", "forever", "-3"):
        with pytest.raises(UsageError, match="invalid --max-time"):
            parse_duration(bad, "--max-time")


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_timeouts_that_never_or_always_pass_are_refused(seconds: float) -> None:
    with pytest.raises(UsageError, match="invalid --timeout"):
        check_timeout(seconds)


# --- plan_launch against a stand-in engine: what a plan sends, and what it refuses before any task ---


class StubImages:
    """The engine's images: one image (its labels) known locally and in its registry; the files its
    containers would read."""

    def __init__(
        self, labels: dict[str, str], files: dict[str, bytes | None] | None = None, image_id: str = ""
    ) -> None:
        self.labels = labels
        self.files = files or {}
        self.image_id = image_id  # the local image's: the registry's configuration digest when the same
        self.registry_auth: list[tuple[str, str] | None] = []
        self.target = EngineTarget(LOCAL, DEFAULT_HOST)

    def image(self, ref: str) -> dict[str, Any]:
        return {"Id": self.image_id, "Config": {"Labels": self.labels}}

    local_image = image

    def remote(self, ref: ImageRef, auth: tuple[str, str] | None) -> RemoteImage:
        """The image as its registry holds it: the same labels, another id than any local image's."""
        self.registry_auth.append(auth)
        return RemoteImage("sha256:" + "1" * 64, "sha256:" + "1" * 64, "sha256:" + "2" * 64, self.labels)

    def read_image_files(self, ref: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        return {path: self.files[path] for path in paths}


class NoEngine:
    """An engine that must not be asked: the plan refuses before it."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"the engine was asked for {name}")

    @staticmethod
    def remote(ref: ImageRef, auth: tuple[str, str] | None) -> RemoteImage:
        raise AssertionError(f"the registry was asked for {ref}")


ALICE_LABELS = labels.write(ImageSpec.create(user="alice"))


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's machine: HOME with a key pair, no Docker login, a remote Qarnot cluster, no backend."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True
    )
    for name, value in {
        "HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "state"), "DOCKER_CONFIG": str(home / ".docker"),
        "QARNOT_CLIENT_TOKEN": "token", "QARNOT_CLUSTER_URL": "https://api.qarnot.com",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("QARNOT_CONFIG_FILE", raising=False)
    monkeypatch.setattr(registry, "open_backend", lambda name, engine=None: SimpleNamespace(name=name))
    return home


def plan(images: StubImages | NoEngine, **options: Any) -> LaunchPlan:
    return plan_launch(LaunchOptions(**options), images=cast("Engine", images), remote=images.remote)


def test_docker_hub_credentials_come_from_the_docker_config(machine: Path) -> None:
    """`docker login` stores Docker Hub's under https://index.docker.io/v1/: a private Hub image gets them."""
    (machine / ".docker").mkdir()
    auth = base64.b64encode(b"hubuser:hub-password").decode()
    (machine / ".docker" / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    )
    images = StubImages(ALICE_LABELS)
    constants = plan(images, image="alice/private:1").request.constants
    assert images.registry_auth == [("hubuser", "hub-password")]
    assert "DOCKER_SRV" not in constants  # Docker Hub is Qarnot's default
    assert constants["DOCKER_REGISTRY_LOGIN"] == "hubuser"
    assert constants["QARNOT_SECRET__DOCKER_REGISTRY_PASSWORD"] == "hub-password"


def test_local_runs_put_no_registry_credentials_in_containers(machine: Path) -> None:
    constants = plan(
        StubImages(ALICE_LABELS), image="reg.example.com/t/a:1", backend=registry.LOCAL,
        registry_auth=("u", "pw"),
    ).request.constants  # fmt: skip
    assert not [name for name in constants if "REGISTRY" in name or "SECRET" in name]
    assert "pw" not in constants.values()


@pytest.mark.parametrize(
    "registry",
    ["127.0.0.1:5000", "localhost:5000", "[::1]:5000", "10.0.0.7:5000", "192.168.1.2", "172.16.3.4:443",
     "169.254.0.10:5000", "registry.localhost"],
)  # fmt: skip
def test_a_registry_qarnot_nodes_cannot_reach_is_refused(machine: Path, registry: str) -> None:
    with pytest.raises(UsageError, match="Qarnot's nodes cannot reach: push the image") as refused:
        plan(NoEngine(), image=f"{registry}/team/alice:1")
    assert "--local" in str(refused.value)


@pytest.mark.parametrize(
    ("cluster", "image"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:5000/team/alice:1"),  # the project's fake, a test double
        ("http://10.1.2.3", "10.0.0.7:5000/team/alice:1"),  # a private deployment shares the network
        ("https://api.qarnot.com", "registry.example.com/team/alice:1"),
    ],
)
def test_a_registry_the_nodes_share_a_network_with_is_accepted(
    machine: Path, monkeypatch: pytest.MonkeyPatch, cluster: str, image: str
) -> None:
    monkeypatch.setenv("QARNOT_CLUSTER_URL", cluster)
    assert plan(StubImages(ALICE_LABELS), image=image).request.constants["DOCKER_REPO"] == "team/alice"


@pytest.mark.parametrize("user", ["", "Alice", "a b", "x;id", "-x", "a" * 33])
def test_an_invalid_login_user_is_refused(machine: Path, user: str) -> None:
    with pytest.raises(UsageError, match=re.escape(f"invalid --user {user!r}")):
        plan(NoEngine(), image="registry.example.com/team/alice:1", user=user)


def test_foreign_images_run_as_root_and_must_have_sshd(machine: Path) -> None:
    found: dict[str, bytes | None] = {path: b"\x7fELF" for path in contract.FOREIGN_NEEDS}
    local = registry.LOCAL
    constants = plan(StubImages({}, found), image="debian:bookworm-slim", backend=local).request.constants
    assert constants["DOCKER_USER"] == "root"
    assert constants["DOCKER_CMD"] == contract.foreign_start().command
    found["/usr/sbin/sshd"] = None
    with pytest.raises(UsageError, match=r"has no OpenSSH server .*: make an ssh-ready image") as refused:
        plan(StubImages({}, found), image="debian:bookworm-slim", backend=registry.LOCAL)
    assert "qimg build --base library/debian:bookworm-slim" in str(refused.value)


def test_the_deadline_is_fixed_at_submit(machine: Path) -> None:
    before = int(time.time())
    constants = plan(StubImages(ALICE_LABELS), image="reg.example.com/t/a:1", max_time="2h").request.constants
    assert constants["QIMG_MAX_SECONDS"] == "7200"
    assert before + 7200 <= int(constants["QIMG_DEADLINE"]) <= int(time.time()) + 7200


def test_a_foreign_image_on_its_registry_is_checked_for_sshd_where_the_engine_holds_that_very_image(
    machine: Path,
) -> None:
    """Its labels come from the registry; the ssh check needs a container, so the local engine's copy,
    and only when it is the registry's image (its id is the configuration's digest)."""
    found: dict[str, bytes | None] = {path: b"\x7fELF" for path in contract.FOREIGN_NEEDS}
    found["/usr/sbin/sshd"] = None
    same = StubImages({}, found, image_id="sha256:" + "2" * 64)
    with pytest.raises(UsageError, match=r"has no OpenSSH server"):
        plan(same, image="reg.example.com/t/debian:12")
    other = StubImages({}, found, image_id="sha256:" + "3" * 64)  # an older image under the name
    assert plan(other, image="reg.example.com/t/debian:12").request.constants["DOCKER_USER"] == "root"


class DeadEngine(StubImages):
    """An engine that does not answer (DOCKER_HOST at a dead socket)."""

    def image(self, ref: str) -> dict[str, Any]:
        raise DockerUnavailable("the Docker engine does not answer at unix:///nowhere.sock")


def test_a_foreign_image_on_its_registry_launches_without_an_engine(machine: Path) -> None:
    """With no engine to hold it, a foreign image is not checked for sshd (its task says if it has none)."""
    constants = plan(DeadEngine({}), image="reg.example.com/t/debian:12").request.constants
    assert constants["DOCKER_USER"] == "root" and constants["DOCKER_CMD"] == contract.foreign_start().command
