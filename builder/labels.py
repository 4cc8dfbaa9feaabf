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
