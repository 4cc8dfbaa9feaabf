"""`qimg build --devcontainer`: a project's devcontainer.json (read and checked by `devcontainer`) made into
an ssh-ready image.

The image the file describes comes first: its `image` as it is (pulled through a one-line build when the
engine lacks it), or its Dockerfile built with its context, args and target, through the builder and the
progress display of every `qimg build`. qimg's own layer goes on top, with the login user the file names
(remoteUser, else containerUser, else the image's own user; an existing user keeps its uid, group, home
and shell), then the devcontainer's part (`spec.ExtraLayer`): its features (local folders, or fetched
from a registry by `feature_registry`) installed in order with their options, remoteEnv for login
sessions, the lifecycle commands for the start script, the workspace folder, containerEnv, and the
labels `run`, `ls` and `code` read (`labels.DevcontainerLabels`).

What the image holds (its users, its own user, its devcontainer.metadata label) is read from the image,
untrusted: checked where it is read.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qimg.builder import build as builds
from qimg.builder import devcontainer
from qimg.builder.build import QUIET, BuildOptions, BuiltImage
from qimg.builder.devcontainer import Devcontainer, Feature
from qimg.builder.feature_registry import ExecutableFile
from qimg.builder.labels import DevcontainerLabels
from qimg.builder.spec import (
    DEFAULT_ID,
    USER_NAME,
    ExtraLayer,
    ImageSpec,
    check_id,
    check_image_ref,
    check_user,
)
from qimg.engine_api import Engine
from qimg.errors import UsageError

# Regular users, as Debian's and RHEL's login.defs count them (UID_MIN, UID_MAX).
_REGULAR_UIDS = range(1000, 60001)
_METADATA_LABEL = "devcontainer.metadata"  # what the Dev Containers tools record in the images they make
_METADATA_LIMIT = 1 << 16
_FEATURE_ENV = "devcontainer-features.env"  # the file the specification's tools source before install.sh
_NAME_PART = re.compile(r"[^a-z0-9]+")
# The folder where the lifecycle commands start, and the lifecycle files' home, for qimg-lifecycle.
_WORKSPACE_SCRIPT = (
    'set -eu; printf "%s\\n" "$1" >/etc/qimg/workspace-folder; '
    'if [ ! -d "$1" ]; then user=$(cat /etc/qimg/login-user); '
    'install -d -o "$user" -g "$(id -gn "$user")" "$1"; fi'
)


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class ImageFacts:
    """What the base image says about its users, read from it."""

    accounts: dict[str, Account]
    user: str  # its USER ("" for root), as written: a name, a uid, NAME:GROUP
    remote_user: str | None  # from its devcontainer.metadata label
    container_user: str | None

    def account(self, user: str) -> Account | None:
        name = user.partition(":")[0]
        if name.isdigit():
            return next((found for found in self.accounts.values() if found.uid == int(name)), None)
        return self.accounts.get(name)

    @property
    def regular_users(self) -> list[Account]:
        return [found for found in self.accounts.values() if found.uid in _REGULAR_UIDS]


def build(config: Devcontainer, tag: str | None, options: BuildOptions = QUIET) -> BuiltImage:
    """The image of a devcontainer.json (read and checked: every refusal of the file comes before the
    engine is touched), ssh-ready, as `tag` (default qimg/USER:latest), remembered for check, push and
    run --local as every build is."""
    if tag:
        check_image_ref(tag, "--tag")
    images = Engine.from_env()
    base, made = _base_image(config, images, options)
    try:
        facts = _facts(images, base)
        spec = _spec(config, facts, base)
    except UsageError:
        if made:
            images.untag(base)  # refused: the Dockerfile's image made for it goes too
        raise
    # qimg's layer goes on the base just read: nothing to pull.
    return builds.build(spec, "auto", tag, replace(options, pull=False))


def base_tag(config: Devcontainer) -> str:
    """The tag of the image the devcontainer.json describes, below qimg's layer: named after the project."""
    name = _NAME_PART.sub("-", devcontainer.workspace_of(config.path).name.lower())[:64].strip("-")
    return f"qimg/devcontainer-base-{name or 'project'}:latest"


def _base_image(config: Devcontainer, images: Engine, options: BuildOptions) -> tuple[str, bool]:
    """The image below qimg's layer, and whether this build made it: the file's `image` when the engine
    has it, else built (its Dockerfile, or `FROM image` to pull it as a build pulls a base)."""
    if config.image and not options.pull and images.image(config.image) is not None:
        return config.image, False
    tag = base_tag(config)
    if config.build:
        recipe = config.build
        builds.build_dockerfile(
            recipe.context, recipe.dockerfile_in_context, recipe.args, recipe.target, tag, options
        )
        return tag, True
    with tempfile.TemporaryDirectory(prefix="qimg-devcontainer-") as folder:
        Path(folder, "Dockerfile").write_text(f"FROM {config.image}\n")
        builds.build_dockerfile(Path(folder), "Dockerfile", (), None, tag, options)
    return tag, True


def _facts(images: Engine, base: str) -> ImageFacts:
    inspected = images.local_image(base)  # the engine's reply: untrusted
    config = _object(inspected.get("Config"))
    user = config.get("User")
    labels = _object(config.get("Labels"))
    remote, container = _metadata_users(labels.get(_METADATA_LABEL))
    passwd = images.read_image_files(base, ["/etc/passwd"])["/etc/passwd"] or b""
    shown_user = user if isinstance(user, str) else ""
    return ImageFacts(_accounts(passwd.decode("utf-8", "replace")), shown_user, remote, container)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _accounts(passwd: str) -> dict[str, Account]:
    """The accounts of an image's /etc/passwd; lines that are not `name:x:uid:gid:gecos:home:shell` with a
    user name qimg takes and numeric ids are left out (they can be no login user of qimg's)."""
    found = {}
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) != 7 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        if USER_NAME.fullmatch(fields[0]) or fields[0] == "root":
            found[fields[0]] = Account(fields[0], int(fields[2]), int(fields[3]), fields[5])
    return found


def _metadata_users(text: Any) -> tuple[str | None, str | None]:
    """remoteUser and containerUser from an image's devcontainer.metadata label (a JSON array of
    objects, the last saying it winning), as the specification merges them; what is not shaped so is
    left out."""
    if not isinstance(text, str) or len(text) > _METADATA_LIMIT:
        return None, None
    try:
        entries = json.loads(text)
    except ValueError:
        return None, None
    entries = entries if isinstance(entries, list) else [entries]
    users: dict[str, str | None] = {"remoteUser": None, "containerUser": None}
    for entry in entries:
        for key in users:
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, str) and (value == "root" or USER_NAME.fullmatch(value)):
                users[key] = value
    return users["remoteUser"], users["containerUser"]


def _login_user(config: Devcontainer, facts: ImageFacts, base: str) -> tuple[str, bool]:
    """Who logs in, as the specification merges it: remoteUser (the file's, else the image's metadata),
    else containerUser (likewise), else the image's own user, else root; and whether a file or the
    metadata named it."""
    named = config.remote_user or facts.remote_user or config.container_user or facts.container_user
    if named:
        return named, True
    if not facts.user:
        return "root", False
    account = facts.account(facts.user)
    if account is None:
        raise UsageError(
            f"{base} runs as {facts.user!r}, which its /etc/passwd does not name",
            hint=f'name the login user in {config.path}: "remoteUser": "NAME"',
        )
    return account.name, False


def _container_user(config: Devcontainer, facts: ImageFacts) -> str:
    named = config.container_user or facts.container_user
    account = facts.account(facts.user) if facts.user else None
    return named or (account.name if account else "root")


def _home(facts: ImageFacts, name: str) -> str:
    account = facts.account(name)
    return account.home if account else ("/root" if name == "root" else f"/home/{name}")


def _spec(config: Devcontainer, facts: ImageFacts, base: str) -> ImageSpec:
    """qimg's layer for the login user, with the devcontainer's on top. An existing user keeps its uid
    and group (and qimg-setup keeps its home and shell); a new one is made with uid and gid 1000."""
    login, named = _login_user(config, facts, base)
    if login == "root":
        regular = facts.regular_users
        if named and regular:
            raise UsageError(
                f"{config.path}: remoteUser: root, but {base} has the user {regular[0].name} "
                f"(uid {regular[0].uid}), and qimg logs in as root only on an image without users",
                hint=f'log in as that user: "remoteUser": "{regular[0].name}"',
            )
        spec = ImageSpec.create(base=base)
    else:
        try:
            check_user(login)
        except UsageError:
            raise UsageError(
                f"{config.path}: remoteUser: {login} is a system account, not a person's",
                hint='name the user who logs in (e.g. "remoteUser": "vscode")',
            ) from None
        account = facts.account(login)
        uid, gid = (account.uid, account.gid) if account else (DEFAULT_ID, DEFAULT_ID)
        if uid == 0:
            raise UsageError(
                f"{base}: its user {login} has uid 0, which is root under another name",
                hint='log in as a user of its own: "remoteUser": "NAME"',
            )
        check_id(uid, f"uid of {login} in {base}:")
        check_id(gid, f"gid of {login} in {base}:")
        spec = ImageSpec.create(base=base, user=login, uid=uid, gid=gid)
    container = _container_user(config, facts)
    users = {
        "_REMOTE_USER": login, "_REMOTE_USER_HOME": _home(facts, login),
        "_CONTAINER_USER": container, "_CONTAINER_USER_HOME": _home(facts, container),
    }  # fmt: skip
    return replace(spec, extra=layer(config, users))


def layer(config: Devcontainer, users: dict[str, str]) -> ExtraLayer:
    """The devcontainer's part of the image: features (each its own archive, added and installed as root
    with its options and `users`, the variables the specification gives install.sh), remoteEnv, the
    lifecycle commands, the workspace folder, containerEnv last (the specification's containerEnv is the
    container's, over the image's), and the labels."""
    lines = ["# From the devcontainer (qimg build --devcontainer)."]
    files: list[tuple[str, bytes, int]] = []
    for index, feature in enumerate(config.features, 1):
        archive, folder = f"devcontainer-feature-{index}.tar", f"/tmp/qimg-feature-{index}"
        files.append((archive, _feature_archive(feature, users), 0o644))
        lines.append(f"# Feature {feature.id}.")
        lines += [_env_line(name, value, expand=True) for name, value in feature.container_env]
        lines += [
            f"ADD {archive} {folder}/",
            f"RUN cd {folder} && set -a && . ./{_FEATURE_ENV} && set +a"
            f" && chmod +x install.sh && ./install.sh && cd / && rm -rf {folder}",
        ]
    if config.remote_env:
        files.append(("devcontainer-remote-env.sh", _remote_env_script(config.remote_env), 0o644))
        lines.append("COPY devcontainer-remote-env.sh /etc/profile.d/qimg-remote-env.sh")
    if config.hooks:
        files.append(("qimg-lifecycle.sh", _script("qimg-lifecycle.sh"), 0o755))
        files.append(("devcontainer-lifecycle.tar", _lifecycle_archive(config), 0o644))
        lines += [
            "COPY qimg-lifecycle.sh /usr/local/sbin/qimg-lifecycle",
            "ADD devcontainer-lifecycle.tar /etc/qimg/lifecycle/",
        ]
    lines.append(f"RUN {json.dumps(['/bin/sh', '-c', _WORKSPACE_SCRIPT, 'sh', config.workspace_folder])}")
    lines += [_env_line(name, value) for name, value in config.container_env]
    named_ports = dict(config.ports_attributes)
    labels = DevcontainerLabels(
        forward_ports=config.forward_ports,
        port_labels=tuple(
            (port, label) for port in config.forward_ports
            if port in named_ports and (label := named_ports[port].label)
        ),
        workspace_folder=config.workspace_folder,
        extensions=config.extensions,
        lifecycle=tuple(dict.fromkeys(hook.name for hook in config.hooks)),
        host_requirements=config.host_requirements,
    )  # fmt: skip
    return ExtraLayer("\n".join(lines) + "\n", tuple(files), tuple(labels.write().items()))


def _env_line(name: str, value: str, *, expand: bool = False) -> str:
    """ENV for one variable, its value as written: in double quotes, where the Dockerfile reads \\, \\"
    and \\$ as the characters themselves (values are one line: checked when they are read). `expand`:
    its ${NAME} expanded by the builder, as the CLI writes a feature's containerEnv (a feature's
    "PATH": "/usr/local/x/bin:${PATH}" extends the image's PATH; devcontainer.json's own is as written)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if not expand:
        escaped = escaped.replace("$", "\\$")
    return f'ENV {name}="{escaped}"'


_CONTAINER_ENV = re.compile(r"\$\{containerEnv:([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def _shell_value(value: str) -> str:
    """A remoteEnv value as /bin/sh reads it: literal text quoted, `${containerEnv:NAME[:DEFAULT]}`
    expanded from the session's environment (the container's: qimg-start hands it to login shells)."""
    parts, end = [], 0
    for found in _CONTAINER_ENV.finditer(value):
        if found.start() > end:
            parts.append(shlex.quote(value[end : found.start()]))
        default = found[2]
        if default is None:
            parts.append(f'"${{{found[1]}}}"')
        else:
            escaped = re.sub(r'([\\"$`])', r"\\\1", default)
            parts.append(f'"${{{found[1]}:-{escaped}}}"')
        end = found.end()
    if end < len(value) or not parts:
        parts.append(shlex.quote(value[end:]))
    return "".join(parts)


def _remote_env_script(remote_env: tuple[tuple[str, str | None], ...]) -> bytes:
    lines = ["# Written by qimg build --devcontainer: the devcontainer's remoteEnv, for login shells."]
    for name, value in remote_env:
        lines.append(f"unset {name}" if value is None else f"export {name}={_shell_value(value)}")
    return ("\n".join(lines) + "\n").encode()


def _script(name: str) -> bytes:
    from importlib.resources import files

    return files("qimg.images").joinpath(name).read_bytes()


def _lifecycle_archive(config: Devcontainer) -> bytes:
    """/etc/qimg/lifecycle as qimg-lifecycle reads it: a folder per hook in order, a file per command
    (its name, made of plain characters, for the output), each a script for /bin/sh."""
    entries: dict[str, bytes | None] = {}
    for number, hook in enumerate(config.hooks, 1):
        folder = f"{number:02d}-{hook.name}"
        entries[folder] = None
        for index, (name, command) in enumerate(hook.commands, 1):
            shown = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:40]
            entries[f"{folder}/{index:02d}-{shown}"] = (command.script + "\n").encode()
    return _archive(entries)


def _feature_archive(feature: Feature, users: dict[str, str]) -> bytes:
    """A feature's files, with the options install.sh reads as variables (devcontainer-features.env)."""
    entries = dict(feature.files)
    variables = [*users.items(), *feature.options]
    entries[_FEATURE_ENV] = "".join(f"{name}={shlex.quote(value)}\n" for name, value in variables).encode()
    return _archive(entries)


def _archive(entries: dict[str, bytes | None]) -> bytes:
    """A tar of `entries` (None: a folder), owned by root, dated 0: the same bytes for the same
    content, so that its layer is cached. Executable: scripts, and a feature's executable files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = 0, 0, 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                executable = name.endswith(".sh") or isinstance(data, ExecutableFile)
                info.size, info.mode = len(data), 0o755 if executable else 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
