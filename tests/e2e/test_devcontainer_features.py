"""Features from a registry: published by the reference tool (`devcontainer features publish`, the Dev
Containers CLI) to Debian's docker-registry with htpasswd auth, fetched by `qimg build --devcontainer`
with the credentials a real `docker login` stored, installed with their options after the features they
name; and each way a fetch fails, one line naming the feature, with nothing built."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound, NotFound

from tests.e2e.conftest import User
from tests.fakes.registry import REGISTRY_PASSWORD, REGISTRY_USER, Registry, put_blob, put_image, put_manifest
from tests.helpers import assert_one_line_error

pytestmark = pytest.mark.docker

TAG = "qimgtest/devcontainer-features:latest"
NAMESPACE = "team/features"
# Run in the task once its post-start hooks are done (the file's appends to the feature's file).
PROBE = (
    "for i in $(seq 100); do [ $(wc -l < /tmp/feature-started) = 2 ] && break; sleep 0.2; done; "
    "paste -sd ' ' /tmp/feature-started"
)


def publish(registry: Registry, collection: Path) -> str:
    """The collection's features published by the Dev Containers CLI; the registry as it names it. The
    CLI speaks plain HTTP to "localhost" only, and qimg reads the same name."""
    host = "localhost:" + registry.host.rsplit(":", 1)[1]
    published = subprocess.run(
        ["devcontainer", "features", "publish", str(collection), "--registry", host,
         "--namespace", NAMESPACE],
        env={**os.environ, "DEVCONTAINERS_OCI_AUTH": f"{host}|{REGISTRY_USER}|{REGISTRY_PASSWORD}"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr[-2000:]
    return host


@pytest.fixture(scope="module")
def features(auth_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two features in the registry: `base`, and `hello`, which installs after `base` and writes its
    option; the registry's name."""
    collection = tmp_path_factory.mktemp("features") / "src"
    host = "localhost:" + auth_registry.host.rsplit(":", 1)[1]
    for name, metadata, script in (
        ("base", {}, "echo base > /usr/local/share/qimg-base\n"),
        (
            "hello",
            {"options": {"greeting": {"type": "string", "default": "hi"}},
             "installsAfter": [f"{host}/{NAMESPACE}/base"],
             # Its own hook: before the file's, as the login user.
             "postStartCommand": "id -un > /tmp/feature-started"},
            'test -s /usr/local/share/qimg-base\nprintf "%s as %s\\n" "$GREETING" "$_REMOTE_USER" '
            "> /usr/local/share/qimg-hello\n",
        ),
    ):  # fmt: skip
        folder = collection / name
        folder.mkdir(parents=True)
        document = {"id": name, "name": name, "version": "1.2.0", **metadata}
        (folder / "devcontainer-feature.json").write_text(json.dumps(document))
        (folder / "install.sh").write_text("#!/bin/sh\nset -eu\n" + script)
    return publish(auth_registry, collection)


@pytest.fixture
def untagged(docker_client: docker.DockerClient) -> Iterator[None]:
    remove(docker_client)
    yield
    remove(docker_client)


@pytest.fixture
def untagged_here(engine_client: docker.DockerClient) -> Iterator[None]:
    """`untagged` on the engine under test."""
    remove(engine_client)
    yield
    remove(engine_client)


def remove(client: docker.DockerClient) -> None:
    with contextlib.suppress(NotFound):  # Podman's "image not known" is no ImageNotFound to docker-py
        client.images.remove(TAG)


def absent(client: docker.DockerClient) -> bool:
    try:
        client.images.get(TAG)
    except ImageNotFound:
        return True
    return False


def project(user: User, features: dict[str, object], **more: object) -> Path:
    folder = user.workdir / "proj"
    (folder / ".devcontainer").mkdir(parents=True, exist_ok=True)
    config = {"image": "debian:bookworm-slim", "remoteUser": "dev", "features": features, **more}
    (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    return folder


def docker_login(user: User, host: str) -> None:
    logged = subprocess.run(
        ["docker", "login", host, "--username", REGISTRY_USER, "--password-stdin"],
        input=REGISTRY_PASSWORD, env={**os.environ, **user.env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert logged.returncode == 0, logged.stderr


@pytest.mark.usefixtures("untagged_here")
def test_features_fetched_with_docker_login_and_installed_in_order(
    user: User, local_user: User, features: str, engine_client: docker.DockerClient
) -> None:
    """On each local engine: qimg fetches the features (no engine pulls an artifact), the engine builds."""
    docker_login(user, features)  # the docker CLI's login, on Docker: the credentials file is the user's
    folder = project(
        user, {f"{features}/{NAMESPACE}/hello:1": {"greeting": "hello from the registry"},
               f"{features}/{NAMESPACE}/base": {}},
        postStartCommand="test -s /tmp/feature-started && echo \"then the file's\" >> /tmp/feature-started",
    )  # fmt: skip
    built = local_user.qimg("build", "--devcontainer", "--tag", TAG, cwd=folder)
    assert built.returncode == 0, built.stderr
    assert REGISTRY_PASSWORD not in built.stdout + built.stderr
    shown = engine_client.containers.run(
        TAG, entrypoint=["cat", "/usr/local/share/qimg-base", "/usr/local/share/qimg-hello"], remove=True
    )
    assert shown.decode() == "base\nhello from the registry as dev\n"  # hello after base, though listed first
    history = " ".join(str(step.get("CreatedBy", "")) for step in engine_client.images.get(TAG).history())
    assert REGISTRY_PASSWORD not in history
    checked = local_user.qimg("check", TAG)
    assert checked.returncode == 0, checked.stderr
    ran = local_user.qimg("run", "--local", TAG, "--name", "featured", "--command", PROBE)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "dev then the file's"


@pytest.mark.usefixtures("untagged")
def test_a_fetch_that_fails_is_one_line_naming_the_feature(
    user: User, features: str, docker_client: docker.DockerClient
) -> None:
    hello = f"{features}/{NAMESPACE}/hello"
    # (logged in first, the feature, its options, the exit code, what the one line says)
    cases: list[tuple[bool, str, dict[str, str], int, tuple[str, ...]]] = [
        # No `docker login`: the registry's refusal, and how to log in (build has no --username).
        (False, f"{hello}:1", {}, 2, ("needs credentials", f"log in with `docker login {features}`")),
        # A registry nobody answers at.
        (False, f"localhost:9/{NAMESPACE}/hello:1", {}, 1, ("does not answer at localhost:9",)),
        # A version the registry does not have.
        (True, f"{hello}:9", {}, 2, (f"has no {NAMESPACE}/hello at 9", "check the feature's name")),
        # An option the fetched feature does not declare.
        (True, f"{hello}:1", {"colour": "red"}, 2, (".colour: the feature has no such option", "greeting")),
    ]
    for logged_in, reference, options, code, fragments in cases:
        if logged_in:
            docker_login(user, features)
        refused = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project(user, {reference: options}))
        assert_one_line_error(refused, code, f'features "{reference}"', *fragments)
        assert "--username" not in refused.stderr
        assert absent(docker_client)


def feature_manifest(registry: Registry, repository: str, layer: bytes) -> dict[str, object]:
    config = put_blob(registry, repository, b"{}")
    return {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.devcontainers", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.devcontainers.layer.v1+tar",
                    "digest": put_blob(registry, repository, layer), "size": len(layer)}],
    }  # fmt: skip


def test_what_the_registry_sends_is_untrusted(
    user: User, open_registry: Registry, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """A feature whose tar holds a link out of its folder, a feature that is not the one named, and an
    image where a feature is named: each refused in one line, nothing built."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("install.sh")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        archive.addfile(link)
    linked = feature_manifest(open_registry, "evil/f/linked", buffer.getvalue())
    put_manifest(open_registry, "evil/f/linked", "1", linked)
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as archive:
        for name, text in (("install.sh", "#!/bin/sh\n"), ("devcontainer-feature.json", '{"id": "other"}')):
            (tmp_path / name).write_text(text)
            archive.add(tmp_path / name, name)
    named = feature_manifest(open_registry, "evil/f/named", other.read_bytes())
    put_manifest(open_registry, "evil/f/named", "1", named)
    put_image(open_registry, "evil/f/image", "1", {})
    host = open_registry.host
    for reference, code, fragment in (
        (f"{host}/evil/f/linked:1", 1, "whose entry 'install.sh' is not a file or a folder"),
        (f"{host}/evil/f/named:1", 2, "the registry sent the feature 'other', not the one named"),
        (f"{host}/evil/f/image:1", 2, "is not a application/vnd.devcontainers artifact"),
    ):
        refused = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project(user, {reference: {}}))
        assert_one_line_error(refused, code, f'features "{reference}":', fragment)
        assert absent(docker_client)
