"""`qimg build` with BuildKit where the docker CLI has buildx (ensure-env installs it) and the engine
builds with it, the legacy builder otherwise or when DOCKER_BUILDKIT=0 says so; the output names which.
The real docker CLI, buildx plugin and Docker engine (its embedded BuildKit), qimg as a user installs it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from qimg.builder import buildkit
from qimg.builder.build import BuildOptions
from qimg.builder.spec import Distro, ImageSpec
from qimg.engine_api import Engine
from qimg.errors import BuildFailed
from tests.helpers import assert_one_line_error, run_qimg

pytestmark = pytest.mark.docker

DOCKER_CLI = shutil.which("docker") or "docker"
ENGINE_SOCKET = "/var/run/docker.sock"
PACKAGE = "no-such-package-qimg"
UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def built_json(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    built = run_qimg("build", "--user", "alice", *args, "--json", env=env)
    assert built.returncode == 0, built.stderr
    info: dict[str, str] = json.loads(built.stdout)
    return info


def test_buildkit_builds_what_the_legacy_builder_builds(docker_client: docker.DockerClient) -> None:
    tag, legacy_tag = "qimgtest/buildkit-alice:latest", "qimgtest/legacy-alice:latest"
    shown = run_qimg("build", "--user", "alice", "--tag", tag, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().endswith(f"on the local engine (unix://{ENGINE_SOCKET}) with BuildKit"), (
        shown.stdout
    )
    # BuildKit's own step lines ("[2/7] RUN ..."), not the classic builder's ("Step 2/9 : RUN ...").
    assert re.search(r"^\[\d+/\d+\] RUN apt-get update", shown.stderr, re.MULTILINE), shown.stderr
    # Written without rich where stderr is no terminal (20 ms of a no-op rebuild).
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines() if "import time:" in line
    }
    assert "qimg.builder.buildkit" in imported
    assert not {name for name in imported if name.split(".")[0] == "rich"}

    info = built_json("--tag", tag)
    assert (info["builder"], info["tag"]) == ("buildkit", tag)
    assert docker_client.images.get(tag).id == info["id"]
    checked = run_qimg("check", "--json")  # the image just built
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["passed"]

    legacy = built_json("--tag", legacy_tag, env={"DOCKER_BUILDKIT": "0"})
    assert legacy["builder"] == "legacy"
    assert docker_client.images.get(tag).labels == docker_client.images.get(legacy_tag).labels


@pytest.mark.parametrize("without", ["DOCKER_BUILDKIT=0", "a docker CLI"])
def test_the_legacy_builder_is_named(without: str, tmp_path: Path) -> None:
    env = {"DOCKER_BUILDKIT": "0"} if without.startswith("DOCKER_") else {"PATH": str(tmp_path)}
    shown = run_qimg("build", "--user", "alice", "--tag", "qimgtest/legacy-alice:latest", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().endswith("with the legacy builder"), shown.stdout
    assert re.search(r"^Step \d+/\d+ : RUN apt-get update", shown.stderr, re.MULTILINE), shown.stderr


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ("maybe", ("DOCKER_BUILDKIT=maybe: not a boolean", "set it to 0")),
        ("1", ("DOCKER_BUILDKIT=1: no docker CLI on PATH", "install docker and docker-buildx")),
    ],
)
def test_a_builder_qimg_cannot_honour_is_one_line(
    value: str, fragments: tuple[str, ...], tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """DOCKER_BUILDKIT=1 where there is no docker CLI (so no buildx) is refused as docker refuses it."""
    tag = f"qimgtest/refused-builder-{os.getpid()}:latest"
    result = run_qimg(
        "build", "--user", "alice", "--tag", tag, env={"DOCKER_BUILDKIT": value, "PATH": str(tmp_path)}
    )
    assert_one_line_error(result, 2, *fragments)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


def test_a_failing_step_under_buildkit(docker_client: docker.DockerClient) -> None:
    """As tests/docker/test_build_failure.py for the legacy builder: one plain line naming the step and
    the exit code, the step's own last lines, nothing left."""
    images = Engine.from_env()
    buildx = buildkit.buildx_command(images)
    assert buildx is not None and buildx[-3:] == ["build", "--builder", "default"], buildx
    tag = f"qimgtest/buildkit-failure-{os.getpid()}:latest"
    spec = ImageSpec.create(user="alice", distro=Distro.DEBIAN, packages=[PACKAGE])
    steps: list[str] = []
    output: list[str] = []

    with pytest.raises(BuildFailed) as raised:
        buildkit.build_image(
            buildx, images, spec, tag, BuildOptions(on_step=steps.append, on_output=output.append)
        )

    failure = raised.value
    shown = re.fullmatch(
        r"build failed at step (\d+)/(\d+) \((RUN apt-get update .+)\): exit code 100", str(failure)
    )
    assert shown, str(failure)
    assert "rm -rf" not in str(failure) and len(shown[3]) <= len("RUN ") + 60 + len("..."), (
        "never the whole RUN"
    )
    assert (failure.number, failure.total, failure.instruction) == (int(shown[1]), int(shown[2]), "RUN")
    assert failure.number < failure.total and failure.command_exit_code == 100 and failure.exit_code == 1
    assert f"E: Unable to locate package {PACKAGE}" in failure.tail, failure.tail
    assert 0 < len(failure.tail) <= 15
    for line in (*failure.tail, *steps, *output):
        assert "\x1b" not in line and not UNPRINTABLE.search(line), repr(line)
    assert f"E: Unable to locate package {PACKAGE}" in output, "the callbacks saw the same plain lines"
    assert re.match(rf"\[{failure.number}/{failure.total}\] RUN apt-get update && ", steps[-1]), steps
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


def test_a_failing_step_among_ten_or_more(tmp_path: Path) -> None:
    """buildx pads step numbers below 10 when there are 10 steps or more ("[ 5/11]"): the step that
    failed is still named (a devcontainer's image has that many)."""
    (tmp_path / "Dockerfile").write_text(
        "FROM debian:bookworm-slim\n"
        + "RUN true\n" * 3
        + "RUN echo failing-here && exit 3\n"
        + "RUN true\n" * 6
    )
    images = Engine.from_env()
    buildx = buildkit.buildx_command(images)
    assert buildx is not None
    steps: list[str] = []
    with pytest.raises(BuildFailed) as raised:
        buildkit.build_dockerfile(
            buildx, images, tmp_path, "Dockerfile", (), None, "qimgtest/buildkit-padded:latest",
            BuildOptions(no_cache=True, on_step=steps.append),
        )  # fmt: skip
    assert str(raised.value) == "build failed at step 5/11 (RUN echo failing-here && exit 3): exit code 3"
    assert raised.value.tail == ("failing-here",)
    assert steps[0] == "[1/11] FROM docker.io/library/debian:bookworm-slim", steps


def test_a_failing_build_under_buildkit_through_the_cli(docker_client: docker.DockerClient) -> None:
    tag = f"qimgtest/buildkit-broken-{os.getpid()}:latest"
    result = run_qimg("build", "--user", "alice", "--package", PACKAGE, "--tag", tag)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("qimg: error: ")]
    assert len(errors) == 1 and re.fullmatch(
        r"qimg: error: build failed at step 2/\d+ \(RUN apt-get update .{1,60}\.\.\.\): exit code 100",
        errors[0],
    ), result.stderr
    assert f"E: Unable to locate package {PACKAGE}" in result.stderr
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


def test_no_secret_reaches_the_output_or_the_layers(
    docker_client: docker.DockerClient, isolate: Path
) -> None:
    """What qimg's environment and the Docker config hold (a --secret's value is qimg's own
    environment variable, a registry password) stays out of the build: every step run again."""
    value, password = f"hf-{secrets.token_hex(16)}", f"pw-{secrets.token_hex(16)}"
    config = isolate / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"alice:{password}".encode()).decode()
    config.write_text(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))
    tag = f"qimgtest/buildkit-secrets-{os.getpid()}:latest"
    env = {"HF_TOKEN": value, "QARNOT_CLIENT_TOKEN": value, "DOCKER_REGISTRY_PASSWORD": password}
    try:
        built = run_qimg("build", "--user", "alice", "--tag", tag, "--no-cache", "--json", env=env)
        assert built.returncode == 0, built.stderr
        assert json.loads(built.stdout)["builder"] == "buildkit"
        saved = subprocess.run([DOCKER_CLI, "save", tag], capture_output=True, check=True).stdout
        history = subprocess.run(
            [DOCKER_CLI, "history", "--no-trunc", tag], capture_output=True, text=True, check=True
        ).stdout
        assert "apt-get install" in history, "the history is the build's"
        for secret in (value, password, auth):
            assert secret not in built.stdout + built.stderr + history
            assert secret.encode() not in saved, "not in any layer nor the image's configuration"
    finally:
        docker_client.images.remove(tag, force=True)


class RecordingProxy:
    """A unix socket forwarding to the engine's, recording the start of what each client sends: the
    proof that a request went to the engine named by this socket. `reply_header`, when set, is added
    to the first reply of each connection: the engine as it would answer configured otherwise."""

    def __init__(self, path: Path) -> None:
        self.sent: list[bytearray] = []
        self.reply_header = b""
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE_SOCKET)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, record: bool) -> None:
        seen = bytearray()
        if record:
            self.sent.append(seen)
        first = True
        try:
            while data := source.recv(1 << 16):
                if record and len(seen) < 1 << 16:
                    seen += data
                if not record and first and self.reply_header:
                    status, _, rest = data.partition(b"\r\n")
                    data = status + b"\r\n" + self.reply_header + b"\r\n" + rest
                first = False
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, RecordingProxy]]:
    path = tmp_path / "engine.sock"
    recording = RecordingProxy(path)
    yield f"unix://{path}", recording
    recording.close()


@pytest.mark.parametrize("named_by", ["DOCKER_CONTEXT", "DOCKER_HOST"])
def test_buildkit_builds_on_the_engine_qimg_resolved(
    named_by: str, proxy: tuple[str, RecordingProxy]
) -> None:
    """The engine is named by a context or by DOCKER_HOST (here the same engine behind another socket),
    and the user's buildx builder is another (a docker-container one, which would pull BuildKit's image):
    buildx is given the engine and its own builder, and the build goes there."""
    host, recording = proxy
    docker_cli = [DOCKER_CLI, "--context", "default"]
    subprocess.run([*docker_cli, "context", "create", "proxied", "--docker", f"host={host}"], check=True)
    subprocess.run(
        [*docker_cli, "buildx", "create", "--name", "elsewhere", "--driver", "docker-container"], check=True
    )
    env = {
        "BUILDX_BUILDER": "elsewhere",
        **({"DOCKER_CONTEXT": "proxied"} if named_by == "DOCKER_CONTEXT" else {"DOCKER_HOST": host}),
    }
    shown = run_qimg("build", "--user", "alice", "--tag", "qimgtest/buildkit-alice:latest", env=env)
    assert shown.returncode == 0, shown.stderr
    named = f"context proxied ({host})" if named_by == "DOCKER_CONTEXT" else f"DOCKER_HOST={host}"
    assert shown.stdout.strip().endswith(f"on {named} with BuildKit"), shown.stdout
    requests = b"\n".join(recording.sent)
    # buildx's docker driver speaks to the engine's BuildKit over /grpc, with the context's files on /session.
    assert re.search(rb"^POST (/v1\.\d+)?/grpc ", requests, re.MULTILINE), requests[:2000]
    assert re.search(rb"^POST (/v1\.\d+)?/session ", requests, re.MULTILINE), requests[:2000]


@pytest.mark.parametrize("chosen", ["", "1"])
def test_an_engine_that_prefers_the_legacy_builder(
    chosen: str, proxy: tuple[str, RecordingProxy], docker_client: docker.DockerClient
) -> None:
    """An engine whose daemon.json says features.buildkit=false answers /_ping with Builder-Version: 1:
    qimg builds with the legacy builder, and DOCKER_BUILDKIT=1 is refused in one line."""
    host, recording = proxy
    recording.reply_header = b"Builder-Version: 1"
    tag = f"qimgtest/legacy-alice-{chosen or 'auto'}-{os.getpid()}:latest"
    shown = run_qimg(
        "build", "--user", "alice", "--tag", tag, env={"DOCKER_HOST": host, "DOCKER_BUILDKIT": chosen}
    )
    if chosen:
        assert_one_line_error(shown, 2, f"DOCKER_BUILDKIT=1: DOCKER_HOST={host} prefers the legacy builder")
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(tag)
    else:
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip().endswith(f"on DOCKER_HOST={host} with the legacy builder"), shown.stdout
        docker_client.images.remove(tag)
