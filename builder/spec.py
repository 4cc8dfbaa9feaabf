"""What an image should be (`ImageSpec`), and the checks that keep user input out of Dockerfiles.

Every value that reaches a template passes one of these checks first, so a rendered Dockerfile can
only contain names, numbers and image references, never shell or Dockerfile syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from qimg.errors import UsageError


class Distro(str, Enum):
    """A distro family: its template (`images/VALUE.Dockerfile.j2`), the os-release IDs that belong
    to it (`--distro auto` reads ID, then ID_LIKE), and the packages its images need besides the
    user's: openssh-server, useradd and friends (shadow), bash for users. A new family is a member
    here and its template."""

    os_ids: tuple[str, ...]
    packages: tuple[str, ...]

    def __new__(cls, value: str, os_ids: tuple[str, ...], packages: tuple[str, ...]) -> Distro:
        member = str.__new__(cls, value)
        member._value_ = value
        member.os_ids, member.packages = os_ids, packages
        return member

    @classmethod
    def named(cls, value: str) -> Distro:
        return next(family for family in cls if family.value == value)

    DEBIAN = "debian", ("debian", "ubuntu"), ("openssh-server",)
    RHEL = (
        "rhel",
        ("rhel", "fedora", "centos", "rocky", "almalinux", "ol", "amzn"),
        ("openssh-server", "shadow-utils"),
    )
    ALPINE = "alpine", ("alpine",), ("openssh-server", "shadow", "bash")


DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_ID = 1000

# useradd's own rule (lower case, digits, _ and -, not starting with -), at most 32 characters.
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Accounts a base image already has for the system; logging in as one of them is never what is meant.
_SYSTEM_ACCOUNTS = frozenset(
    {
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
        "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "sshd", "_apt", "messagebus",
        "systemd-network", "systemd-resolve", "adm", "shutdown", "halt", "operator", "ftp",
    }
)  # fmt: skip
# Debian, RPM and apk package names: letters, digits and . + - _ (no spaces, quotes, $ or newlines).
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# The Docker reference grammar (distribution/reference), without the optional digest's algorithms,
# and with a lower-case registry name: the engine reads an upper-case first component as a registry
# and then refuses the name, and docker-py refuses an upper-case registry in a build's tag.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)
MAX_ID = 2**31 - 2  # 2**31-1 and above break tools that keep ids in a signed int; 65534 is nobody.


def check_user(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise UsageError(
            f"invalid --user {name!r}: use 1 to 32 lower-case letters, digits, '_' or '-', "
            "starting with a letter or '_' (for example --user alice)"
        )
    if name in _SYSTEM_ACCOUNTS:
        raise UsageError(
            f"invalid --user {name!r}: that is a system account; name a personal user (e.g. --user alice), "
            "or leave --user out for key-only root login"
        )
    return name


def check_id(value: int, option: str) -> int:
    if not 1 <= value <= MAX_ID or value == 65534:
        raise UsageError(f"invalid {option} {value}: use a number from 1 to {MAX_ID}, not 0 (root) or 65534")
    return value


def check_package(name: str) -> str:
    if not _PACKAGE.fullmatch(name):
        raise UsageError(
            f"invalid --package {name!r}: a package name has only letters, digits and . + - _ "
            "(one package per --package)"
        )
    return name


def check_image_ref(ref: str, option: str) -> str:
    """A Docker image reference such as `debian:bookworm-slim` or `127.0.0.1:5000/team/sim:dev`."""
    if len(ref) > 255 or not _REFERENCE.fullmatch(ref):
        raise UsageError(
            f"invalid {option} {ref!r}: expected an image reference like debian:bookworm-slim "
            "or registry.example.com:5000/team/image:tag (registry and repository in lower case)"
        )
    return ref


@dataclass(frozen=True)
class ExtraLayer:
    """What goes on top of qimg's own layer, made and checked by its maker (`qimg build --devcontainer`:
    builder/devcontainer_build.py): Dockerfile instructions appended after qimg's, the files of the build
    context they copy (name, bytes, mode; plain names beside qimg's own), and labels."""

    dockerfile: str
    files: tuple[tuple[str, bytes, int], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ImageSpec:
    """Everything a template needs. Construct it with `ImageSpec.create`, which checks every value."""

    base: str = DEFAULT_BASE
    distro: Distro = Distro.DEBIAN
    user: str | None = None
    uid: int = DEFAULT_ID
    gid: int = DEFAULT_ID
    sudo: bool = False
    packages: tuple[str, ...] = field(default_factory=tuple)
    root_login: bool = True
    extra: ExtraLayer | None = None

    @classmethod
    def create(
        cls,
        *,
        base: str = DEFAULT_BASE,
        distro: Distro = Distro.DEBIAN,
        user: str | None = None,
        uid: int = DEFAULT_ID,
        gid: int = DEFAULT_ID,
        sudo: bool = False,
        packages: tuple[str, ...] | list[str] = (),
        root_login: bool | None = None,
    ) -> ImageSpec:
        """Check every value. `root_login=None`: root logs in only when there is no user."""
        check_image_ref(base, "--base")
        if user is not None:
            check_user(user)
        check_id(uid, "--uid")
        check_id(gid, "--gid")
        unique_packages = tuple(dict.fromkeys(check_package(p) for p in packages))
        if root_login is None:
            root_login = user is None
        if user is None and not root_login:
            raise UsageError("nobody could log in: give --user NAME, or allow root login (--root-login)")
        if user is None and sudo:
            raise UsageError("--sudo needs --user NAME (root needs no sudo)")
        return cls(base, distro, user, uid, gid, sudo, unique_packages, root_login)

    @property
    def login_user(self) -> str:
        """The account the launcher logs in as and writes DOCKER_SSH keys for."""
        return self.user or "root"

    @property
    def allowed_users(self) -> tuple[str, ...]:
        users = (self.user,) if self.user else ()
        return (*users, "root") if self.root_login else users


DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_LOOPBACK_HOSTS = ("localhost", "127.")


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way a registry and Qarnot's DOCKER_* constants need it."""

    registry: str  # DOCKER_HUB when the reference names none
    repository: str  # the path inside the registry, with library/ for official Docker Hub images
    tag: str
    digest: str = ""

    @classmethod
    def parse(cls, ref: str, option: str) -> ImageRef:
        check_image_ref(ref, option)
        rest, _, digest = ref.partition("@")
        first, slash, remainder = rest.partition("/")
        # As docker reads it: a first component with a dot, a colon or "localhost" is a registry.
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = DOCKER_HUB, rest
        name, colon, tag = path.rpartition(":") if ":" in path else (path, "", "")
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in name:
                name = f"library/{name}"
        return cls(registry, name, tag if colon else "latest", digest)

    @property
    def on_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    @property
    def repository_ref(self) -> str:
        """The name to tag, push and pull (no tag): registry/path, or just the path on Docker Hub."""
        return self.repository if self.on_hub else f"{self.registry}/{self.repository}"

    @property
    def server_url(self) -> str:
        """DOCKER_SRV: https, except for a registry on this machine (docker uses plain HTTP there too)."""
        scheme = "http" if self.registry.startswith(_LOOPBACK_HOSTS) else "https"
        return f"{scheme}://{self.registry}"

    def __str__(self) -> str:
        return f"{self.repository_ref}:{self.tag}" + (f"@{self.digest}" if self.digest else "")
