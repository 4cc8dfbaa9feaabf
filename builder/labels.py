"""The label schema of qimg images: written by `render`, read back by `check` and the launcher.

Labels are how a later command knows, without having built the image, who logs in and what starts
sshd. Anyone can publish an image with these labels, so reading them is validating untrusted input:
a value that a qimg build could not have written is refused, never passed on to an ssh config, a
shell or a task constant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from qimg import __version__
from qimg.builder.spec import MAX_ID, USER_NAME, ImageSpec
from qimg.errors import UsageError

PREFIX = "io.qimg."
START_COMMAND = "/usr/local/sbin/qimg-start"
_USER, _START, _UID, _GID, _ROOT_LOGIN = (
    f"{PREFIX}{name}" for name in ("user", "start", "uid", "gid", "root-login")
)
# An absolute path of plain characters: it becomes DOCKER_CMD, where a space, quote or `${` would mean
# something to Qarnot or to a shell.
_START_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,254}")


@dataclass(frozen=True)
class ImageLabels:
    """What a qimg image says about itself, checked."""

    user: str  # the login user ("root" for key-only root images)
    start: str  # the command that starts sshd: DOCKER_CMD
    uid: int
    gid: int
    root_login: bool


def write(spec: ImageSpec) -> dict[str, str]:
    """The labels of an image built from `spec`."""
    return {
        f"{PREFIX}version": __version__,
        f"{PREFIX}distro": spec.distro.value,
        _USER: spec.login_user,
        _START: START_COMMAND,
        _UID: str(spec.uid) if spec.user else "0",
        _GID: str(spec.gid) if spec.user else "0",
        _ROOT_LOGIN: "yes" if spec.root_login else "no",
        "org.opencontainers.image.base.name": spec.base,
        **dict(spec.extra.labels if spec.extra else ()),
    }


def read(labels: Mapping[str, str] | None, ref: str) -> ImageLabels | None:
    """The checked labels of a qimg image; None for an image qimg did not build (no user and start
    label). Raises UsageError, naming the label, for a value no qimg build writes."""
    found = dict(labels or {})
    if not (found.get(_USER) or found.get(_START)):
        return None

    def refuse(label: str, why: str) -> UsageError:
        shown = repr(found.get(label, ""))[:60]
        return UsageError(
            f"{ref}: its label {label}={shown} {why}: this image was not built by qimg as it is; "
            f"rebuild it with `qimg build --base {ref}`"
        )

    user = found.get(_USER, "")
    if not (user == "root" or USER_NAME.fullmatch(user)):
        raise refuse(_USER, "is not a user name")
    start = found.get(_START, "")
    if not _START_PATH.fullmatch(start) or "/../" in f"{start}/":
        raise refuse(_START, "is not a plain absolute path")
    ids = []
    for label in (_UID, _GID):
        text = found.get(label, "0")
        if not re.fullmatch(r"\d{1,10}", text) or int(text) > MAX_ID:
            raise refuse(label, "is not a user or group id")
        ids.append(int(text))
    if found.get(_ROOT_LOGIN, "no") not in {"yes", "no"}:
        raise refuse(_ROOT_LOGIN, "is neither yes nor no")
    return ImageLabels(user, start, ids[0], ids[1], found.get(_ROOT_LOGIN) == "yes")


# A devcontainer's labels (`qimg build --devcontainer`): what `run`, `ls` and `code` need from it. Their
# values are written between double quotes in a Dockerfile, where `$`, `\` and quotes would mean
# something: each part is of plain characters, checked where devcontainer.json is read and again here.
FORWARD_PORTS, PORT_LABELS, WORKSPACE_FOLDER, VSCODE_EXTENSIONS, LIFECYCLE, HOST_REQUIREMENTS = (
    f"{PREFIX}{name}"
    for name in (
        "forward-ports", "port-labels", "workspace-folder", "vscode-extensions", "lifecycle",
        "host-requirements",
    )
)  # fmt: skip
PORT_LABEL = re.compile(r"[A-Za-z0-9 ._:/()+-]{1,40}")
PLAIN_FOLDER = re.compile(r"/[A-Za-z0-9 ._@+,=/-]{0,254}")
EXTENSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\.[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._-]+)?")
LIFECYCLE_HOOKS = (
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
)
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_LIST_LIMIT = 64  # entries of one label: more than any devcontainer.json lists
MAX_CPUS = 1024  # a hostRequirements.cpus above any machine's
MAX_MEMORY_MB = 64_000_000  # 64 TB
_REQUIREMENT = re.compile(r"(cpus|memory-mb)=([1-9][0-9]{0,7})|gpu=1")


@dataclass(frozen=True)
class HostRequirements:
    """A devcontainer's hostRequirements as Qarnot can honour them: the least cores and memory (decimal
    MB, as Qarnot's offers count it) of the machine, and whether it needs a GPU. None: no requirement."""

    cpus: int | None = None
    memory_mb: int | None = None
    gpu: bool = False

    def write(self) -> str:
        parts = [f"cpus={self.cpus}"] if self.cpus else []
        parts += [f"memory-mb={self.memory_mb}"] if self.memory_mb else []
        return ",".join(parts + (["gpu=1"] if self.gpu else []))


def is_plain_folder(folder: str) -> bool:
    """An absolute path of plain characters, without `..`: a workspace folder a link or a shell can name."""
    return PLAIN_FOLDER.fullmatch(folder) is not None and "/../" not in f"{folder}/"


@dataclass(frozen=True)
class DevcontainerLabels:
    """What a devcontainer image says about itself, checked: the ports `run` forwards by default (and
    their names, for `ls`), where `code` opens and the extensions it lists, the lifecycle hooks the
    image's start script runs."""

    forward_ports: tuple[int, ...] = ()
    port_labels: tuple[tuple[int, str], ...] = ()
    workspace_folder: str | None = None
    extensions: tuple[str, ...] = ()
    lifecycle: tuple[str, ...] = ()
    host_requirements: HostRequirements = HostRequirements()

    def write(self) -> dict[str, str]:
        written = {
            FORWARD_PORTS: ",".join(str(port) for port in self.forward_ports),
            PORT_LABELS: ";".join(f"{port}={label}" for port, label in self.port_labels),
            WORKSPACE_FOLDER: self.workspace_folder or "",
            VSCODE_EXTENSIONS: ",".join(self.extensions),
            LIFECYCLE: ",".join(self.lifecycle),
            HOST_REQUIREMENTS: self.host_requirements.write(),
        }
        return {label: value for label, value in written.items() if value}


def read_devcontainer(labels: Mapping[str, str] | None, ref: str) -> DevcontainerLabels:
    """The checked devcontainer labels of an image (empty for an image without them). Raises UsageError,
    naming the label, for a value no qimg build writes."""
    found = dict(labels or {})

    def refuse(label: str, why: str) -> UsageError:
        shown = repr(found.get(label, ""))[:60]
        return UsageError(
            f"{ref}: its label {label}={shown} {why}: this image was not built by qimg as it is; "
            "rebuild it with `qimg build --devcontainer`"
        )

    def entries(label: str) -> list[str]:
        text = found.get(label, "")
        parts = text.split(";" if label == PORT_LABELS else ",") if text else []
        if len(parts) > _LIST_LIMIT:
            raise refuse(label, f"lists more than {_LIST_LIMIT} entries")
        return parts

    def port(label: str, text: str) -> int:
        if not _PORT.fullmatch(text) or int(text) > 65535:
            raise refuse(label, f"holds {text[:20]!r}, not a port")
        return int(text)

    forward_ports = tuple(port(FORWARD_PORTS, text) for text in entries(FORWARD_PORTS))
    port_labels = []
    for entry in entries(PORT_LABELS):
        number, _, name = entry.partition("=")
        if not PORT_LABEL.fullmatch(name):
            raise refuse(
                PORT_LABELS, "holds a port name of other characters than letters, digits and ._:/()+-"
            )
        port_labels.append((port(PORT_LABELS, number), name))
    folder = found.get(WORKSPACE_FOLDER) or None
    if folder is not None and not is_plain_folder(folder):
        raise refuse(WORKSPACE_FOLDER, "is not a plain absolute path")
    extensions = entries(VSCODE_EXTENSIONS)
    if not all(EXTENSION_ID.fullmatch(extension) for extension in extensions):
        raise refuse(VSCODE_EXTENSIONS, "holds something other than extension ids")
    hooks = entries(LIFECYCLE)
    if not all(hook in LIFECYCLE_HOOKS for hook in hooks):
        raise refuse(LIFECYCLE, "names something other than lifecycle hooks")
    requirements = {}
    for entry in entries(HOST_REQUIREMENTS):
        matched = _REQUIREMENT.fullmatch(entry)
        if not matched or entry.partition("=")[0] in requirements:
            raise refuse(
                HOST_REQUIREMENTS, "holds something other than cpus=N, memory-mb=N and gpu=1, once each"
            )
        requirements[entry.partition("=")[0]] = int(matched[2] or 1)
    cpus, memory = requirements.get("cpus"), requirements.get("memory-mb")
    if (cpus or 0) > MAX_CPUS or (memory or 0) > MAX_MEMORY_MB:
        raise refuse(HOST_REQUIREMENTS, f"asks for more than {MAX_CPUS} cpus or {MAX_MEMORY_MB} MB")
    return DevcontainerLabels(
        forward_ports, tuple(port_labels), folder, tuple(extensions), tuple(hooks),
        HostRequirements(cpus, memory, "gpu" in requirements),
    )  # fmt: skip
