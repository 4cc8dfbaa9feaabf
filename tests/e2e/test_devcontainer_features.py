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
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docker
import pytest
from docker.errors import ImageNotFound, NotFound

from tests.e2e.conftest import User
from tests.fakes.http import http_server
from tests.fakes.registry import REGISTRY_PASSWORD, REGISTRY_USER, Registry, put_blob, put_image, put_manifest
from tests.helpers import assert_one_line_error, write_feature

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
    """Two features in the registry: `base`, whose install.sh runs an executable of its folder, and
    `hello`, which installs after `base` and writes its option; the registry's name."""
    collection = tmp_path_factory.mktemp("features") / "src"
    host = "localhost:" + auth_registry.host.rsplit(":", 1)[1]
    for name, metadata, script in (
        ("base", {}, "./bin/tool > /usr/local/share/qimg-base\n"),
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
        document = {"id": name, "name": name, "version": "1.2.0", **metadata}
        write_feature(collection / name, document, "#!/bin/sh\nset -eu\n" + script)
    tool = collection / "base" / "bin" / "tool"  # its mode travels in the CLI's tar
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho base\n")
    tool.chmod(0o755)
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
    # The same feature twice, at two versions: which one would install is not the file's to leave open.
    twice = project(user, {f"{hello}:1": {}, hello: {}})
    refused = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=twice)
    assert_one_line_error(refused, 2, f'features "{hello}": the same feature as "{hello}:1"')
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


@pytest.mark.usefixtures("untagged")
def test_ctrl_c_while_a_registry_stalls_is_an_interruption(
    user: User, docker_client: docker.DockerClient
) -> None:
    """A registry that takes the connection and never answers: Ctrl-C ends the build as any interruption
    (128 + SIGINT, one line, no traceback), nothing built."""
    import signal
    import socket

    with socket.socket() as stalling:
        stalling.bind(("127.0.0.1", 0))
        stalling.listen()
        port = stalling.getsockname()[1]
        reference = f"127.0.0.1:{port}/{NAMESPACE}/hello:1"
        folder = project(user, {reference: {}})
        process = user.background("build", "--devcontainer", "--tag", TAG, cwd=folder)
        stalling.settimeout(60)
        connection, _ = stalling.accept()  # qimg asks, and is never answered
        with connection:
            connection.recv(4096)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["qimg: interrupted by SIGINT"], stderr
    assert absent(docker_client)


def feature_tar(tmp_path: Path, feature_id: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        metadata = json.dumps({"id": feature_id})
        for name, text in (("install.sh", "#!/bin/sh\n"), ("devcontainer-feature.json", metadata)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_manifests_that_are_no_feature(
    user: User, open_registry: Registry, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """A tag that names an index (a multi-platform image's, not a feature's manifest): one line naming
    the feature and what it is; a digest-pinned reference whose digest the registry does not have: one
    line; an upper-case reference (the CLI lower-cases it) and a right digest: fetched."""
    good = feature_manifest(open_registry, "evil/f/good", feature_tar(tmp_path, "good"))
    digest = put_manifest(open_registry, "evil/f/good", "1", good)
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": len(json.dumps(good)), "platform": {"os": "linux", "architecture": "amd64"}}  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    put_manifest(open_registry, "evil/f/good", "index", index)
    host = open_registry.host
    wrong = "sha256:" + "0" * 64
    for reference, code, fragment in (
        (f"{host}/evil/f/good:index", 2, "an image index"),
        (f"{host}/evil/f/good@{wrong}", 2, f"has no evil/f/good at {wrong}"),
    ):
        refused = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project(user, {reference: {}}))
        assert_one_line_error(refused, code, f'features "{reference}":', fragment)
        assert absent(docker_client)
    for reference in (f"{host}/Evil/F/Good:1", f"{host}/evil/f/good@{digest}"):
        built = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project(user, {reference: {}}))
        assert built.returncode == 0, built.stderr
        remove(docker_client)


@pytest.mark.usefixtures("untagged")
def test_a_wrong_password_in_docker_config_is_one_line_without_it(
    user: User, features: str, docker_client: docker.DockerClient
) -> None:
    """docker login's credentials gone stale (the password changed since): the registry's refusal in one
    line naming the user, never the password."""
    import base64

    stale = "stale-password-0f9e"
    (user.home / ".docker").mkdir(exist_ok=True)
    auth = base64.b64encode(f"{REGISTRY_USER}:{stale}".encode()).decode()
    (user.home / ".docker" / "config.json").write_text(json.dumps({"auths": {features: {"auth": auth}}}))
    reference = f"{features}/{NAMESPACE}/hello:1"
    refused = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project(user, {reference: {}}))
    refusal = f"refused {NAMESPACE}/hello to {REGISTRY_USER}"
    assert_one_line_error(refused, 2, f'features "{reference}"', refusal)
    assert stale not in refused.stdout + refused.stderr and auth not in refused.stdout + refused.stderr
    assert absent(docker_client)


@pytest.mark.usefixtures("untagged")
def test_hostile_option_values_reach_install_sh_as_written(
    user: User, docker_client: docker.DockerClient
) -> None:
    """Option values and defaults that a shell would run ($(...), backquotes, quotes, a ;): install.sh
    gets them as written, nothing of them run; the devcontainer and its feature named relative, from
    another folder."""
    folder = user.workdir / "elsewhere" / "proj"
    default = "$(touch /tmp/pwned-default)`touch /tmp/pwned-backquote`"
    options = {
        "given": {"type": "string", "default": ""}, "defaulted": {"type": "string", "default": default}
    }  # fmt: skip
    write_feature(
        folder / ".devcontainer" / "f", {"id": "f", "options": options},
        '#!/bin/sh\nset -eu\nprintf "%s\\n" "$GIVEN" "$DEFAULTED" > /usr/local/share/qimg-options\n',
    )  # fmt: skip
    given = 'it\'s "quoted"; touch /tmp/pwned-given $HOME \\'
    config = {"image": "debian:bookworm-slim", "features": {"./f": {"given": given}}}
    (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    (user.workdir / "other").mkdir()
    built = user.qimg(
        "build", "--devcontainer", "../elsewhere/proj/.devcontainer/devcontainer.json", "--tag", TAG,
        cwd=user.workdir / "other",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    shown = docker_client.containers.run(
        TAG, entrypoint=["sh", "-c", "cat /usr/local/share/qimg-options; ls /tmp"], remove=True
    )
    assert shown.decode() == f"{given}\n{default}\n"


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.usefixtures("untagged")
def test_a_layer_redirected_elsewhere_gets_no_credentials(user: User, tmp_path: Path) -> None:
    """A registry (Basic auth) that redirects the layer to another host, as registries that keep blobs
    in S3 do: the layer is fetched there, checked, and the other host never sees the credentials."""
    import base64
    import hashlib

    layer = feature_tar(tmp_path, "moved")
    layer_digest = f"sha256:{hashlib.sha256(layer).hexdigest()}"
    config = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.devcontainers", "size": 2,
                   "digest": f"sha256:{hashlib.sha256(config).hexdigest()}"},
        "layers": [{"mediaType": "application/vnd.devcontainers.layer.v1+tar", "digest": layer_digest,
                    "size": len(layer)}],
    }).encode()  # fmt: skip
    password = "redirect-s3cret"
    basic = "Basic " + base64.b64encode(f"{REGISTRY_USER}:{password}".encode()).decode()
    seen: list[dict[str, str]] = []

    def store(handler: BaseHTTPRequestHandler) -> None:
        seen.append(dict(handler.headers))
        reply(handler, 200, layer)

    def registry(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") != basic:
            reply(handler, 401, b"", WWW_Authenticate='Basic realm="test"')
        elif "/manifests/" in handler.path:
            reply(handler, 200, manifest, Content_Type="application/vnd.oci.image.manifest.v1+json")
        else:
            reply(handler, 307, b"", Location=f"http://{elsewhere}/bucket/{layer_digest}")

    with http_server(store) as elsewhere, http_server(registry) as host:
        (user.home / ".docker").mkdir(exist_ok=True)
        auth = base64.b64encode(f"{REGISTRY_USER}:{password}".encode()).decode()
        (user.home / ".docker" / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        reference = f"{host}/team/f/moved:1"
        built = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=project(user, {reference: {}}))
    assert built.returncode == 0, built.stderr
    assert len(seen) == 1 and not any(name.lower() == "authorization" for name in seen[0]), seen
    assert password not in built.stdout + built.stderr


@pytest.mark.usefixtures("untagged")
def test_a_feature_container_env_extends_the_path_as_the_cli_does(
    user: User, docker_client: docker.DockerClient
) -> None:
    """A feature's containerEnv (node's, go's, python's: "PATH": "/usr/local/x/bin:${PATH}") is written
    as the CLI writes it, an ENV whose ${...} the builder expands; the devcontainer's own containerEnv
    stays as written (the CLI escapes its $)."""
    folder = project(user, {"./f": {}})
    document = json.loads((folder / ".devcontainer" / "devcontainer.json").read_text())
    document["containerEnv"] = {"OWN": "${HOME}"}
    (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps(document))
    metadata = {"id": "f", "containerEnv": {"PATH": "/opt/f/bin:${PATH}", "F_QUOTED": 'a "b" \\c'}}
    write_feature(folder / ".devcontainer" / "f", metadata, "#!/bin/sh\n")
    built = user.qimg("build", "--devcontainer", "--tag", TAG, cwd=folder)
    assert built.returncode == 0, built.stderr
    env = dict(line.split("=", 1) for line in docker_client.images.get(TAG).attrs["Config"]["Env"])
    assert env["PATH"].startswith("/opt/f/bin:/usr/local/") and "$" not in env["PATH"], env["PATH"]
    assert env["F_QUOTED"] == 'a "b" \\c'
    assert env["OWN"] == "${HOME}"
