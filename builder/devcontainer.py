"""A project's devcontainer.json read as the Dev Containers specification reads it, into one checked
`Devcontainer`: JSON with comments and trailing commas (through the `json5` parser, a superset), the
variables the specification substitutes when it reads the file (`${localEnv:NAME}`,
`${localWorkspaceFolder}`, `${containerWorkspaceFolder}` and their basenames), paths relative to the
file's folder, and every key sorted into what qimg honours, what it cannot honour on Qarnot (refused,
naming the key and why, unless the user passes `--ignore KEY`) and what changes nothing on Qarnot.

Nothing here touches the engine: every refusal comes before anything is built. The file is the user's
input and the features' folders too, so every value is checked where it is read; what reaches a
Dockerfile, a label or a shell script later has passed one of these checks.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from qimg.builder import feature_registry
from qimg.builder.feature_registry import FEATURE_LIMIT, FeatureFiles, feature_file
from qimg.builder.labels import (
    EXTENSION_ID,
    LIFECYCLE_HOOKS,
    MAX_CPUS,
    MAX_MEMORY_MB,
    PLAIN_FOLDER,
    PORT_LABEL,
    HostRequirements,
)
from qimg.builder.spec import USER_NAME, check_image_ref
from qimg.errors import Interrupted, QimgError, UsageError
from qimg.files import read_regular

# Where the specification looks when no path is given, in its order, from the current directory.
DEFAULT_LOCATIONS = (Path(".devcontainer", "devcontainer.json"), Path(".devcontainer.json"))
_FILE_LIMIT = 1 << 20  # a devcontainer.json or a feature's metadata: far less in practice


# Keys qimg cannot honour on a Qarnot task, and why. Each is refused unless the user passes --ignore KEY.
REFUSED = {
    "runArgs": "its docker run options have no place on Qarnot, which starts the task's container itself",
    "mounts": "a Qarnot task has no bind mounts or volumes (send data with qimg run --upload/--results)",
    "workspaceMount": "a Qarnot task has no bind mounts (send data with qimg run --upload/--results)",
    "privileged": "a Qarnot task never runs privileged",
    "capAdd": "a Qarnot task gets no extra capabilities",
    "securityOpt": "a Qarnot task's security options are Qarnot's, not the image's",
    "init": "a Qarnot task's first process is qimg's start script: there is no --init",
    "initializeCommand": "it runs on this machine before every start, and qimg runs nothing here",
    "appPort": "it publishes ports on the host; on Qarnot a port is reached through qimg's ssh tunnel "
    "(name it in forwardPorts)",
    "dockerComposeFile": "a Qarnot task is one container, not a Docker Compose project",
    "service": "a Qarnot task is one container, not a Docker Compose project",
    "runServices": "a Qarnot task is one container, not a Docker Compose project",
    "build.options": "its docker build options are not passed on by qimg",
}
# Keys that change nothing on Qarnot, and why: read, and set aside.
IGNORED = {
    "$schema": "it names the file's schema",
    "name": "it names the environment for the editor",
    "overrideCommand": "qimg's start script is always the image's command",
    "shutdownAction": "a task stops with qimg stop, or when its command or session ends",
    "updateRemoteUserUID": "there is no bind mount whose owner the user must match",
    "userEnvProbe": "login shells read the environment as the image sets it",
    "waitFor": "qimg logs in when sshd answers; the commands' output is in qimg logs",
    "otherPortsAttributes": "qimg forwards only the ports listed in forwardPorts",
    "secrets": "it only recommends secrets: pass them with qimg run --secret NAME",
    "build.cacheFrom": "it only hints where a cache may be",
    "settings": "VS Code's settings are the editor's own",
    "hostRequirements.storage": "a Qarnot task's disk is its machine's: no hardware constraint chooses it",
}
_HONOURED = frozenset(
    {
        "image", "build", "dockerFile", "context", "remoteUser", "containerUser", "containerEnv",
        "remoteEnv", "forwardPorts", "portsAttributes", "workspaceFolder", "features",
        "overrideFeatureInstallOrder", "customizations", "extensions", "hostRequirements", *LIFECYCLE_HOOKS,
    }
)  # fmt: skip
_BUILD_KEYS = frozenset({"dockerfile", "context", "args", "target"})
_MAX_HOOKS = 99  # the lifecycle folders' two-digit numbers (images/qimg-lifecycle.sh)
_HOST_KEYS = frozenset({"cpus", "memory", "storage", "gpu"})
_MEMORY = re.compile(r"([0-9]{1,15})([tgmk]b)?")  # the specification's pattern
_BYTES = {"": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}  # binary, as the CLI reads them

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A variable whose value is a credential: the specification would pass it to the container when it
# starts; qimg would write it into the image, which is pushed to a registry.
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEYS?$", re.IGNORECASE)
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BUILD_TARGET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LOOPBACK = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class Command:
    """One lifecycle command: a shell command line (the string form) or an argv run as it is (the array
    form)."""

    shell: str | None = None
    argv: tuple[str, ...] = ()

    @property
    def script(self) -> str:
        """The command as /bin/sh runs it: the string as written, the array's words quoted."""
        return self.shell if self.shell is not None else shlex.join(self.argv)


@dataclass(frozen=True)
class Hook:
    """A lifecycle hook's commands: one unnamed (the string and array forms), or several named ones that
    run in parallel (the object form)."""

    name: str
    commands: tuple[tuple[str, Command], ...]


@dataclass(frozen=True)
class DockerfileBuild:
    dockerfile: Path  # absolute, inside `context`
    context: Path  # absolute
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None

    @property
    def dockerfile_in_context(self) -> str:
        """The Dockerfile's path as the build context names it (POSIX, relative)."""
        return self.dockerfile.relative_to(self.context).as_posix()


@dataclass(frozen=True)
class Feature:
    """A feature, from a local folder or a registry: its files (install.sh among them), its id, its
    options as install.sh gets them (environment variables, the given value or the default), and the
    features it must install after."""

    reference: str  # as devcontainer.json names it: "./my-feature", "ghcr.io/devcontainers/features/node:1"
    resource: str  # the reference without its version, as other features name it
    id: str
    files: tuple[tuple[str, bytes | None], ...]  # relative POSIX names; None for a folder
    options: tuple[tuple[str, str], ...]
    container_env: tuple[tuple[str, str], ...]
    depends_on: tuple[str, ...] = ()
    installs_after: tuple[str, ...] = ()
    hooks: tuple[Hook, ...] = ()  # its own lifecycle commands: they run before devcontainer.json's

    @property
    def after(self) -> tuple[str, ...]:
        return (*self.depends_on, *self.installs_after)


@dataclass(frozen=True)
class PortAttributes:
    label: str | None = None
    protocol: str | None = None


@dataclass(frozen=True)
class Devcontainer:
    """A devcontainer.json as qimg honours it, every value checked."""

    path: Path
    image: str | None
    build: DockerfileBuild | None
    remote_user: str | None
    container_user: str | None
    container_env: tuple[tuple[str, str], ...]
    remote_env: tuple[tuple[str, str | None], ...]
    forward_ports: tuple[int, ...]
    ports_attributes: tuple[tuple[int, PortAttributes], ...]
    hooks: tuple[Hook, ...]  # in the order they run: the features' (in their install order), the file's
    workspace_folder: str
    extensions: tuple[str, ...]
    host_requirements: HostRequirements
    set_aside: tuple[str, ...]  # keys read and set aside: IGNORED ones, and those of --ignore
    features: tuple[Feature, ...] = ()

    @property
    def login_user(self) -> str | None:
        """remoteUser, else containerUser; None: the image's own user decides."""
        return self.remote_user or self.container_user


def why_set_aside(key: str) -> str:
    """Why a key of `Devcontainer.set_aside` changes nothing: its IGNORED reason, or --ignore's."""
    return IGNORED.get(key, f"--ignore {key}")


def find(path: Path | None, cwd: Path | None = None) -> Path:
    """The devcontainer.json to read: `path` (a file, or a folder holding one of the default locations),
    or the first default location that exists in `cwd`."""
    where = cwd or Path.cwd()
    if path is None:
        found = next((where / place for place in DEFAULT_LOCATIONS if (where / place).is_file()), None)
        if found is None:
            raise UsageError(
                f"no devcontainer.json in {where}: looked for "
                + " and ".join(str(place) for place in DEFAULT_LOCATIONS),
                hint="run qimg from the project's folder, or name the file: --devcontainer PATH",
            )
        return found
    if path.is_dir():
        inside = next((path / place for place in DEFAULT_LOCATIONS if (path / place).is_file()), None)
        if inside is None and (path / "devcontainer.json").is_file():
            inside = path / "devcontainer.json"
        if inside is None:
            raise UsageError(
                f"--devcontainer {path}: a folder without a devcontainer.json",
                hint="name the file itself, or the project's folder",
            )
        return inside
    if not path.exists():
        raise UsageError(f"--devcontainer {path}: no such file", hint="check the path")
    return path


def workspace_of(config: Path) -> Path:
    """The project folder a devcontainer.json belongs to (the specification's local workspace folder):
    the folder above `.devcontainer/` (or above `.devcontainer/NAME/`), else the file's own folder."""
    folder = config.parent
    if folder.name == ".devcontainer":
        return folder.parent
    if folder.parent.name == ".devcontainer":
        return folder.parent.parent
    return folder


def parse(text: str, where: str) -> dict[str, Any]:
    """JSONC (comments, trailing commas) read into a JSON object, or the one line that says where it
    is not valid."""
    import json5

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        found = json5.loads(text, parse_constant=refuse_constant)
    except RecursionError:  # json5 recurses: nested deeper than Python's stack
        raise UsageError(
            f"{where} is not valid JSON with comments: nested too deeply", hint="fix the file"
        ) from None
    except ValueError as error:
        reason = " ".join(str(error).split()).removeprefix("<string>:")
        raise UsageError(
            f"{where} is not valid JSON with comments: line {reason}",
            hint="fix the file (a JSON object; // and /* */ comments and trailing commas are allowed)",
        ) from None
    if not isinstance(found, dict):
        raise UsageError(f"{where} does not hold a JSON object", hint='write it as { "image": ... }')
    return found


def read(
    path: Path | None,
    ignore: tuple[str, ...] = (),
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Devcontainer:
    """The devcontainer.json at `path` (None: the default locations in `cwd`), checked. `ignore`: keys to
    set aside, refused ones included. `environ`: what `${localEnv:NAME}` reads (this process's)."""
    config = find(path, cwd).absolute()
    try:
        text = read_regular(config, _FILE_LIMIT).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{config} is not UTF-8 text", hint="save it as UTF-8") from None
    except OSError as error:
        raise UsageError(f"cannot read {config}: {error.strerror or error}", hint="check the path") from None
    raw = parse(text, str(config))
    return _Reader(config, raw, ignore, dict(os.environ if environ is None else environ)).read()


class _Reader:
    """One devcontainer.json's checks, each naming the file and the key."""

    def __init__(
        self, config: Path, raw: dict[str, Any], ignore: tuple[str, ...], env: dict[str, str]
    ) -> None:
        self.config, self.raw, self.env = config, raw, env
        self.folder = config.parent
        self.workspace = workspace_of(config)
        self.ignore = tuple(dict.fromkeys(ignore))
        self.container_workspace = ""

    def fail(self, key: str, what: str, hint: str = "") -> UsageError:
        return UsageError(f"{self.config}: {key}: {what}", hint=hint)

    def read(self) -> Devcontainer:
        raw = self.raw
        present = set(raw)
        for parent in ("build", "hostRequirements"):  # their own keys, each to honour, refuse or ignore
            if isinstance(children := raw.get(parent), dict):
                present |= {f"{parent}.{key}" for key in children}
        for key in self.ignore:
            if key not in present:
                raise UsageError(f"--ignore {key}: {self.config} has no key {key}", hint="leave it out")
        for key in sorted(present):
            if key in self.ignore or key in IGNORED:
                continue
            if key in REFUSED:
                raise self.fail(
                    key, f"qimg cannot honour it: {REFUSED[key]}", f"remove it, or --ignore {key}"
                )
            if key.startswith("build.") and key.removeprefix("build.") not in _BUILD_KEYS:
                raise self.fail(key, "not a build key qimg knows", f"fix its name, or --ignore {key}")
            if (
                key.startswith("hostRequirements.")
                and key.removeprefix("hostRequirements.") not in _HOST_KEYS
            ):
                raise self.fail(key, "not a hostRequirements key", f"fix its name, or --ignore {key}")
            if "." not in key and key not in _HONOURED:
                raise self.fail(
                    key, "not a devcontainer.json key qimg knows", f"fix its name, or --ignore {key}"
                )
        kept = {key: value for key, value in raw.items() if key in _HONOURED and key not in self.ignore}
        # The container's workspace first: other values may name it.
        default = f"/workspaces/{self.workspace.name}"
        self.container_workspace = self.workspace_folder(kept.get("workspaceFolder", default))
        image, dockerfile_build = self.source(kept)
        users = [self.user(kept, key) for key in ("remoteUser", "containerUser")]
        found = Devcontainer(
            path=self.config, image=image, build=dockerfile_build,
            remote_user=users[0], container_user=users[1],
            container_env=self.container_env(kept.get("containerEnv")),
            remote_env=self.remote_env(kept.get("remoteEnv")),
            forward_ports=self.forward_ports(kept.get("forwardPorts")),
            ports_attributes=self.ports_attributes(kept.get("portsAttributes")),
            hooks=tuple(hook for key in LIFECYCLE_HOOKS if (hook := self.hook(key, kept.get(key)))),
            workspace_folder=self.container_workspace,
            extensions=self.extensions(kept.get("customizations"), kept.get("extensions")),
            host_requirements=self.host_requirements(kept.get("hostRequirements")),
            set_aside=tuple(sorted(key for key in present if key in IGNORED or key in self.ignore)),
        )  # fmt: skip
        # Last, the features (a registry's are fetched), whose own hooks run before the file's, each
        # hook's in the order the features install.
        features = self.features(kept.get("features"), kept.get("overrideFeatureInstallOrder"))
        hooks = tuple(
            hook for key in LIFECYCLE_HOOKS
            for hook in (*(own for feature in features for own in feature.hooks), *found.hooks)
            if hook.name == key
        )  # fmt: skip
        if len(hooks) > _MAX_HOOKS:
            raise self.fail("features", f"with the file, they have more than {_MAX_HOOKS} lifecycle hooks")
        return replace(found, features=features, hooks=hooks)

    # Values

    def text(self, key: str, value: Any, *, remote: bool = False) -> str:
        """A string value with the specification's variables substituted (`remote`: remoteEnv's, which
        keeps `${containerEnv:NAME}` for the session to expand)."""
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, not {_json_type(value)}")

        def substitute(found: re.Match[str]) -> str:
            inner = found[1]
            kind, _, rest = inner.partition(":")
            if kind in ("localEnv", "env"):
                name, _, default = rest.partition(":")
                if not _ENV_NAME.fullmatch(name):
                    raise self.fail(key, f"${{{inner}}} does not name an environment variable")
                if _SECRET_NAME.search(name):
                    raise self.fail(
                        key, f"${{{inner}}} would write a credential into the image",
                        f"pass it when the task starts instead: qimg run --secret {name.upper()}",
                    )  # fmt: skip
                return self.env.get(name) or default
            if inner == "localWorkspaceFolder":
                return str(self.workspace)
            if inner == "localWorkspaceFolderBasename":
                return self.workspace.name
            if inner == "containerWorkspaceFolder" and self.container_workspace:
                return self.container_workspace
            if inner == "containerWorkspaceFolderBasename" and self.container_workspace:
                return PurePosixPath(self.container_workspace).name
            if kind == "containerEnv":
                if remote:
                    return found[0]
                raise self.fail(
                    key, f"${{{inner}}}: not yet: qimg expands ${{containerEnv:...}} only in remoteEnv"
                )
            return found[0]  # as the specification's reader does: an unknown variable stays as written

        return _VARIABLE.sub(substitute, value)

    def source(self, kept: dict[str, Any]) -> tuple[str | None, DockerfileBuild | None]:
        build = kept.get("build")
        legacy = kept.get("dockerFile")
        if build is not None and not isinstance(build, dict):
            raise self.fail("build", f"expected an object, not {_json_type(build)}")
        dockerfile = (build or {}).get("dockerfile", legacy)
        if "image" in kept and dockerfile is not None:
            raise self.fail("image", "goes with no Dockerfile build", "keep either image or build.dockerfile")
        if "image" in kept:
            image = self.text("image", kept["image"])
            return check_image_ref(image, f"{self.config}: image"), None
        if dockerfile is None:
            raise self.fail(
                "image", "missing: the file names no image",
                'give "image": "debian:bookworm-slim", or "build": {"dockerfile": "Dockerfile"}',
            )  # fmt: skip
        file_key = "build.dockerfile" if build and "dockerfile" in build else "dockerFile"
        context_key = "build.context" if build and "context" in build else "context"
        context_text = (build or {}).get("context", kept.get("context", "."))
        context = self.folder_path(context_key, self.text(context_key, context_text))
        file = self.local_path(file_key, self.text(file_key, dockerfile))
        if not file.is_file():
            raise self.fail(
                file_key, f"{file} is not a file", "check the path (relative to devcontainer.json)"
            )
        if not _within(file, context):
            raise self.fail(
                file_key, f"{file} is outside the build context {context}",
                "move the Dockerfile into the context, or widen build.context",
            )  # fmt: skip
        args = (build or {}).get("args", {})
        if not isinstance(args, dict):
            raise self.fail("build.args", f"expected an object, not {_json_type(args)}")
        for name in args:
            if not _ENV_NAME.fullmatch(name):
                raise self.fail("build.args", f"{name!r} is not a build argument name")
        checked_args = tuple(
            (name, self.single_line(f"build.args.{name}", value)) for name, value in args.items()
        )
        target = (build or {}).get("target")
        if target is not None:
            target = self.text("build.target", target)
            if not _BUILD_TARGET.fullmatch(target):
                raise self.fail("build.target", f"{target!r} is not a build stage name")
        return None, DockerfileBuild(file, context, checked_args, target)

    def single_line(self, key: str, value: Any) -> str:
        checked = self.text(key, value)
        if _CONTROL.search(checked):
            raise self.fail(key, "holds a control character (a newline?)", "keep the value on one line")
        return checked

    def local_path(self, key: str, text: str) -> Path:
        """A path as the specification reads it: relative to the devcontainer.json's folder (`~` is not
        expanded by it either)."""
        if not text:
            raise self.fail(key, "is empty")
        return Path(os.path.normpath(self.folder / text))

    def folder_path(self, key: str, text: str) -> Path:
        folder = self.local_path(key, text)
        if not folder.is_dir():
            raise self.fail(
                key, f"{folder} is not a folder", "check the path (relative to devcontainer.json)"
            )
        return folder

    def user(self, kept: dict[str, Any], key: str) -> str | None:
        if key not in kept:
            return None
        name = self.text(key, kept[key])
        if name != "root" and not USER_NAME.fullmatch(name):
            raise self.fail(
                key, f"{name!r} is not a user name qimg can log in as",
                "name the user (1 to 32 lower-case letters, digits, _ or -), not a uid",
            )  # fmt: skip
        return name

    def environment(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected an object of variables, not {_json_type(value)}")
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise self.fail(key, f"{name!r} is not a variable name", "use letters, digits and _")
        return value

    def container_env(self, value: Any) -> tuple[tuple[str, str], ...]:
        variables = self.environment("containerEnv", value)
        return tuple(
            (name, self.single_line(f"containerEnv.{name}", text)) for name, text in variables.items()
        )

    def remote_env(self, value: Any) -> tuple[tuple[str, str | None], ...]:
        variables = self.environment("remoteEnv", value)
        return tuple(
            (name, None if text is None else self.remote_value(f"remoteEnv.{name}", text))
            for name, text in variables.items()
        )

    def remote_value(self, key: str, value: Any) -> str:
        checked = self.text(key, value, remote=True)
        if _CONTROL.search(checked):
            raise self.fail(key, "holds a control character (a newline?)", "keep the value on one line")
        for found in _VARIABLE.finditer(checked):
            kind, _, rest = found[1].partition(":")
            if kind == "containerEnv" and not _ENV_NAME.fullmatch(rest.partition(":")[0]):
                raise self.fail(key, f"{found[0]} does not name an environment variable")
        return checked

    def forward_ports(self, value: Any) -> tuple[int, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("forwardPorts", f"expected a list of ports, not {_json_type(value)}")
        return tuple(dict.fromkeys(self.port("forwardPorts", entry) for entry in value))

    def port(self, key: str, entry: Any) -> int:
        fix = 'give a port number from 1 to 65535 (or "localhost:PORT")'
        if isinstance(entry, str):
            host, colon, number = entry.rpartition(":")
            if colon and host not in _LOOPBACK:
                raise self.fail(
                    key, f"{entry!r} is a port of another host, which a Qarnot task does not have",
                    f"forward a port of the task itself, or --ignore {key}",
                )  # fmt: skip
            entry = int(number) if number.isdigit() and number.isascii() else entry
        if isinstance(entry, bool) or not isinstance(entry, int) or not 1 <= entry <= 65535:
            raise self.fail(key, f"{entry!r} is not a port", fix)
        return entry

    def ports_attributes(self, value: Any) -> tuple[tuple[int, PortAttributes], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail("portsAttributes", f"expected an object, not {_json_type(value)}")
        found = []
        for key, attributes in value.items():
            where = f"portsAttributes.{key}"
            if not isinstance(attributes, dict):
                raise self.fail(where, f"expected an object, not {_json_type(attributes)}")
            if not (key.isdigit() and key.isascii()):
                continue  # a range or a pattern: qimg forwards the ports of forwardPorts only
            port = self.port(where, int(key))
            label = attributes.get("label")
            if label is not None:
                label = self.text(f"{where}.label", label)
                if not PORT_LABEL.fullmatch(label):
                    raise self.fail(
                        f"{where}.label", f"{label!r} cannot be an image label",
                        "use up to 40 letters, digits, spaces and . _ : / ( ) + -",
                    )  # fmt: skip
            protocol = attributes.get("protocol")
            if protocol not in (None, "http", "https"):
                raise self.fail(f"{where}.protocol", f"{protocol!r} is neither http nor https")
            found.append((port, PortAttributes(label, protocol)))
        return tuple(found)

    def hook(self, name: str, value: Any, where: str = "", feature: str = "") -> Hook | None:
        """The lifecycle hook `name` (`where` names it in messages); `feature`: the id of the feature
        whose hook it is, which names its commands in qimg logs."""
        key = where or name
        if value is None:
            return None
        forms = "a string, an array of strings, or an object of those (commands run in parallel)"
        if isinstance(value, dict):
            commands = tuple(
                (str(label), self.command(f"{key}.{label}", command)) for label, command in value.items()
            )
        elif isinstance(value, (str, list)):
            commands = (("", self.command(key, value)),)
        else:
            raise self.fail(key, f"{_json_type(value)} is not a lifecycle command form", f"write {forms}")
        kept = tuple(
            (" ".join(part for part in (feature, label) if part), command)
            for label, command in commands if command.script.strip()
        )  # fmt: skip
        return Hook(name, kept) if kept else None

    def command(self, key: str, value: Any) -> Command:
        if isinstance(value, str):
            return Command(shell=self.text(key, value))
        if isinstance(value, list) and all(isinstance(word, str) for word in value):
            return Command(argv=tuple(self.text(key, word) for word in value))
        raise self.fail(
            key, f"{_json_type(value)} is not a command",
            "write a string (run by /bin/sh) or an array of strings (run as it is)",
        )  # fmt: skip

    def host_requirements(self, value: Any) -> HostRequirements:
        """cpus, memory (binary units, as the Dev Containers CLI reads them, in Qarnot's decimal MB) and
        gpu (true, or an object: a GPU; "optional" or false: none needed); storage is set aside."""
        if value is None:
            return HostRequirements()
        if not isinstance(value, dict):
            raise self.fail("hostRequirements", f"expected an object, not {_json_type(value)}")
        given = {
            key: found for key, found in value.items()
            if f"hostRequirements.{key}" not in self.ignore and f"hostRequirements.{key}" not in IGNORED
        }  # fmt: skip
        cpus = given.get("cpus")
        if cpus is not None and not (
            isinstance(cpus, int) and not isinstance(cpus, bool) and 0 < cpus <= MAX_CPUS
        ):
            raise self.fail("hostRequirements.cpus", f"{cpus!r} is not a number of cpus from 1 to {MAX_CPUS}")
        memory = given.get("memory")
        memory_mb = None
        if memory is not None:
            matched = _MEMORY.fullmatch(memory) if isinstance(memory, str) else None
            memory_mb = math.ceil(int(matched[1]) * _BYTES[matched[2] or ""] / 1e6) if matched else 0
            if not 0 < memory_mb <= MAX_MEMORY_MB:
                raise self.fail(
                    "hostRequirements.memory", f"{memory!r} is not an amount of memory qimg can ask for",
                    'write a number with kb, mb, gb or tb, as the specification does: "16gb"',
                )  # fmt: skip
        gpu = given.get("gpu", False)
        if not (isinstance(gpu, (bool, dict)) or gpu == "optional"):
            raise self.fail(
                "hostRequirements.gpu", f'{gpu!r} is neither true, false, "optional" nor an object'
            )
        return HostRequirements(cpus, memory_mb, gpu is True or isinstance(gpu, dict))

    def workspace_folder(self, value: Any) -> str:
        folder = self.text("workspaceFolder", value)
        normal = os.path.normpath(folder) if folder.startswith("/") else ""
        if not PLAIN_FOLDER.fullmatch(normal) or normal.startswith("//"):
            raise self.fail(
                "workspaceFolder", f"{folder!r} is not an absolute path of plain characters",
                "name a folder such as /workspaces/project (letters, digits, spaces and . _ @ + , = -)",
            )  # fmt: skip
        return normal

    def extensions(self, value: Any, legacy: Any) -> tuple[str, ...]:
        """customizations.vscode.extensions, and the top-level "extensions" of older files (which the
        specification's reader moves there)."""
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise self.fail("customizations", f"expected an object, not {_json_type(value)}")
        vscode = value.get("vscode", {})
        if not isinstance(vscode, dict):
            raise self.fail("customizations.vscode", f"expected an object, not {_json_type(vscode)}")
        key = "customizations.vscode.extensions"
        listed = vscode.get("extensions", [])
        for where, found in ((key, listed), ("extensions", legacy or [])):
            if not isinstance(found, list):
                raise self.fail(where, f"expected a list, not {_json_type(found)}")
        listed = [*(legacy or []), *listed]
        for extension in listed:
            if not (isinstance(extension, str) and EXTENSION_ID.fullmatch(extension)):
                raise self.fail(
                    key, f"{extension!r} is not an extension id",
                    "name it PUBLISHER.NAME, as the Marketplace does (ms-python.python)",
                )  # fmt: skip
        return tuple(dict.fromkeys(listed))

    def features(self, value: Any, override: Any) -> tuple[Feature, ...]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail("features", f"expected an object, not {_json_type(value)}")
        key = "overrideFeatureInstallOrder"
        first = [] if override is None else override
        if not (isinstance(first, list) and all(isinstance(name, str) for name in first)):
            raise self.fail(key, f"expected a list of features, not {_json_type(first)}")
        listed = [self.feature(reference, options) for reference, options in value.items()]
        seen: dict[str, str] = {}
        for feature in listed:
            if feature.resource in seen:
                raise self.fail(
                    f'features "{feature.reference}"', f'the same feature as "{seen[feature.resource]}"',
                    "list a feature once, with the version you want",
                )  # fmt: skip
            seen[feature.resource] = feature.reference
        resources = [feature_registry.resource_of(name) for name in first]
        for name, resource in zip(first, resources, strict=True):
            if resource not in {feature.resource for feature in listed}:
                raise self.fail(
                    key, f"{name!r} is not one of the features listed", "name them as features does"
                )
        return self.install_order(listed, resources)

    def feature(self, reference: str, given: Any) -> Feature:
        key = f'features "{reference}"'
        if reference.startswith("./"):
            resource, files = reference, self.local_feature(key, reference)
        else:
            try:
                ref = feature_registry.FeatureRef.parse(reference)
                resource, files = ref.resource, feature_registry.fetch(ref)
            except Interrupted:  # Ctrl-C while the registry is asked: an interruption, not its fault
                raise
            except QimgError as error:  # the registry's faults keep their kind (and exit code)
                raise type(error)(f"{self.config}: {key}: {error.message}", hint=error.hint) from None
        if not isinstance(files.get("install.sh"), bytes):
            raise self.fail(key, "the feature has no install.sh", "a feature's folder holds install.sh")
        metadata_file = files.get("devcontainer-feature.json")
        if not isinstance(metadata_file, bytes) or len(metadata_file) > _FILE_LIMIT:
            raise self.fail(
                key, "the feature has no devcontainer-feature.json (of at most 1 MB)",
                "a feature's folder holds devcontainer-feature.json",
            )  # fmt: skip
        metadata = parse(metadata_file.decode("utf-8", "replace"), f"{key}'s devcontainer-feature.json")
        feature_id = metadata.get("id")
        if not (isinstance(feature_id, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", feature_id)):
            raise self.fail(key, f"its devcontainer-feature.json has no valid id ({feature_id!r})")
        if not reference.startswith("./") and feature_id.lower() != resource.rsplit("/", 1)[-1]:
            raise self.fail(key, f"the registry sent the feature {feature_id!r}, not the one named")
        for refused in ("privileged", "capAdd", "securityOpt", "init", "mounts", "entrypoint"):
            if metadata.get(refused) not in (None, False, [], ""):
                raise self.fail(
                    key, f"its {refused} cannot be honoured on a Qarnot task", "leave the feature out"
                )
        hooks = tuple(
            hook for name in LIFECYCLE_HOOKS
            if (hook := self.hook(name, metadata.get(name), f"{key} {name}", f"feature {feature_id}"))
        )  # fmt: skip
        return Feature(
            reference, resource, feature_id, tuple(files.items()), self.feature_options(key, metadata, given),
            self.feature_env(key, metadata), *self.feature_order(key, metadata), hooks,
        )  # fmt: skip

    def local_feature(self, key: str, reference: str) -> FeatureFiles:
        """The files of a local feature's folder: regular files and folders, no links."""
        folder = Path(os.path.normpath(self.folder / reference))
        if not _within(folder, self.folder) or folder == self.folder:
            raise self.fail(key, "a local feature is a folder inside devcontainer.json's folder")
        if not folder.is_dir():
            raise self.fail(
                key, f"{folder} is not a folder", "check the path (relative to devcontainer.json)"
            )
        files: FeatureFiles = {}
        total = 0
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise self.fail(
                    key, f"{folder}: {name} is not a plain file or folder",
                    "a feature's folder holds files and folders only (no links)",
                )  # fmt: skip
            if path.is_dir():
                files[name] = None
                continue
            try:
                files[name] = feature_file(read_regular(path, FEATURE_LIMIT), path.stat().st_mode)
            except OSError as error:
                raise self.fail(key, f"cannot read {path}: {error.strerror or error}") from None
            total += len(files[name] or b"")
            if total > FEATURE_LIMIT:
                raise self.fail(key, f"{folder} holds more than {FEATURE_LIMIT >> 20} MB", "trim it")
        return files

    def feature_options(self, key: str, metadata: dict[str, Any], given: Any) -> tuple[tuple[str, str], ...]:
        """The feature's options as install.sh gets them: the given value, else the default."""
        if isinstance(given, str):
            given = {"version": given}
        elif given is True or given is None:
            given = {}
        if not isinstance(given, dict):
            raise self.fail(key, f"expected an object of options, not {_json_type(given)}")
        declared = metadata.get("options", {})
        if not isinstance(declared, dict):
            raise self.fail(key, "its devcontainer-feature.json's options are not an object")
        for name in given:
            if name not in declared:
                known = ", ".join(declared) or "none"
                raise self.fail(f"{key}.{name}", "the feature has no such option", f"its options: {known}")
        options = []
        for name, declaration in declared.items():
            value = given.get(name, declaration.get("default", "") if isinstance(declaration, dict) else "")
            if isinstance(value, bool):
                value = "true" if value else "false"
            text = self.single_line(f"{key}.{name}", value)
            allowed = declaration.get("enum") if isinstance(declaration, dict) else None
            if isinstance(allowed, list) and text not in allowed:
                raise self.fail(f"{key}.{name}", f"{text!r} is not one of {allowed}")
            variable = option_variable(name)
            if variable.strip("_") == "":
                raise self.fail(
                    f"{key}.{name}", "the option's name gives no variable for install.sh",
                    "its devcontainer-feature.json must name its options with letters or digits",
                )  # fmt: skip
            options.append((variable, text))
        return tuple(options)

    def feature_env(self, key: str, metadata: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        variables = self.environment(f"{key} containerEnv", metadata.get("containerEnv"))
        return tuple(
            (name, self.single_line(f"{key} containerEnv.{name}", text)) for name, text in variables.items()
        )

    def feature_order(self, key: str, metadata: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The features this one depends on, and those it installs after, as resources."""
        depends_on, installs_after = metadata.get("dependsOn", {}), metadata.get("installsAfter", [])
        if not (isinstance(depends_on, dict) and isinstance(installs_after, list)):
            raise self.fail(key, "its dependsOn is not an object, or its installsAfter not a list")
        named = [*depends_on, *installs_after]
        if not all(isinstance(name, str) and len(name) <= 256 for name in named):
            raise self.fail(key, "its dependsOn or installsAfter names a feature by what is not a name")
        return (
            tuple(feature_registry.resource_of(name) for name in depends_on),
            tuple(feature_registry.resource_of(name) for name in installs_after),
        )

    def install_order(self, features: list[Feature], first: list[str]) -> tuple[Feature, ...]:
        """The features in the order they install: each after those it depends on or installs after (of
        those listed); of those that may go next, those `first` names (overrideFeatureInstallOrder), and
        those they install after, in its order, then the others in the order listed. A feature it depends
        on must be listed."""
        listed = {feature.resource for feature in features}
        for feature in features:
            for needed in feature.depends_on:
                if needed not in listed:
                    raise self.fail(
                        f'features "{feature.reference}"', f"it depends on {needed}, which is not listed",
                        f'add "{needed}" (with its version) to features',
                    )  # fmt: skip
        # A feature `first` names goes early, and so do those it must install after.
        needs = {feature.resource: feature.after for feature in features}
        rank: dict[str, int] = {}
        for index, resource in reversed(list(enumerate(first))):
            pending = [resource]
            while pending:
                found = pending.pop()
                if found in needs and rank.get(found) != index:
                    rank[found] = index
                    pending += needs[found]
        ordered: list[Feature] = []
        waiting = list(features)
        while waiting:
            placed = {feature.resource for feature in ordered}
            ready = [
                feature for feature in waiting
                if all(before in placed or before not in listed for before in feature.after)
            ]  # fmt: skip
            if not ready:
                names = ", ".join(f'"{feature.reference}"' for feature in waiting)
                raise self.fail("features", f"{names} depend on each other in a cycle", "break the cycle")
            chosen = min(ready, key=lambda feature: rank.get(feature.resource, len(first)))
            ordered.append(chosen)
            waiting.remove(chosen)
        return tuple(ordered)


def option_variable(name: str) -> str:
    """A feature option's environment variable, as the specification names it: non-word characters
    made `_`, upper case, a leading digit or `_` run prefixed with `_`."""
    variable = re.sub(r"[^\w_]", "_", name, flags=re.ASCII).upper()  # JavaScript's \w and \d: ASCII
    return re.sub(r"^[\d_]+", "_", variable, flags=re.ASCII)


def _within(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or inside it, links resolved."""
    resolved, base = path.resolve(), folder.resolve()
    return resolved == base or base in resolved.parents


def _json_type(value: Any) -> str:
    names: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "true/false"), (int, "a number"), (float, "a number"), (str, "a string"),
        (list, "an array"), (dict, "an object"),
    )  # fmt: skip
    if value is None:
        return "null"
    return next((name for kind, name in names if isinstance(value, kind)), "a value")
