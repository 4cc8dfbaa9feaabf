"""`qimg code`: VS Code's Remote-SSH on a task's pinned host.

VS Code runs ssh with the user's ~/.ssh/config, not with `-F`: qimg's entries reach it through the
Include line of `qimg ssh-config --install`. The folder opened defaults to the workspace folder of the
image's devcontainer, recorded at launch, else to the login user's home, where qimg images put it
(`useradd -m`: /home/USER; root's is /root).
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from qimg.errors import QimgError, UsageError
from qimg.launcher import attach, names, processes, sshconfig, transfer
from qimg.launcher.records import TaskRecord

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Workspace:
    host: str  # qimg-NAME[-i]
    folder: str  # absolute, on the task
    extensions: tuple[str, ...] = field(default=())  # the devcontainer's customizations.vscode.extensions
    attach_hook: bool = False  # the image runs a postAttachCommand when VS Code attaches

    @property
    def link(self) -> str:
        return f"vscode://vscode-remote/ssh-remote+{self.host}{quote(self.folder, safe='/')}"

    @property
    def argv(self) -> list[str]:
        return ["code", "--remote", f"ssh-remote+{self.host}", self.folder]


def home(user: str) -> str:
    return "/root" if user == "root" else f"/home/{user}"


def remote_folder(user: str, path: str | None) -> str:
    """PATH on the task, absolute: relative to the login user's home (also `~`), home if not given."""
    if path is None:
        return home(user)
    if path == "~" or path.startswith("~/"):
        path = path[2:]
    return posixpath.normpath(posixpath.join(home(user), path))


def _is_text(path: str) -> bool:
    """False for bytes that are not UTF-8 (Python holds them as surrogates): no link can name them."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def workspace(name: str, path: str | None, instance: int, backend: str) -> Workspace:
    """The task's pinned host (followed if it moved) and the folder to open there: PATH, else the
    devcontainer's workspace folder recorded at launch, else the login user's home."""
    if path is not None and (not path or _CONTROL.search(path) or not _is_text(path)):
        raise UsageError(f"code: {path[:60]!r} is not a folder path")
    record = names.login(name, backend).record
    return Workspace(
        transfer.instance_host(record, instance),
        opened_folder(record, path),
        tuple(record.extensions),
        record.attach_hook,
    )


def opened_folder(record: TaskRecord, path: str | None) -> str:
    """PATH (from the login user's home), else the workspace folder recorded at launch, else home."""
    if path is None and record.workspace_folder:
        return record.workspace_folder
    return remote_folder(record.user, path)


# VS Code Remote-SSH's user setting: extensions it installs on every remote server it sets up.
DEFAULT_EXTENSIONS_SETTING = "remote.SSH.defaultExtensions"


def extensions_note(extensions: tuple[str, ...]) -> list[str]:
    """The lines that list the devcontainer's extensions, with the Remote-SSH setting that installs
    them on the task's server (a snippet for the user's settings.json); none without extensions."""
    if not extensions:
        return []
    snippet = json.dumps({DEFAULT_EXTENSIONS_SETTING: list(extensions)}, indent=2)
    return [
        f"the image's devcontainer lists VS Code extensions: {', '.join(extensions)}",
        "Remote-SSH installs them on the task's server with this user setting (in settings.json):",
        *snippet.splitlines()[1:-1],
    ]


def include_hint(user_config: Path) -> str:
    """One line when VS Code cannot see qimg's entries (no Include in the user's config), else ""."""
    if sshconfig.has_include(user_config):
        return ""
    return (
        f"VS Code reads {user_config}, which does not include qimg's entries: run "
        "`qimg ssh-config --install` once (or set remote.SSH.configFile to `qimg ssh-config`'s path)"
    )


def require_code() -> None:
    """VS Code's command line is there, before anything else is done."""
    if shutil.which("code") is None:
        raise QimgError(
            "VS Code's `code` command is not on PATH (in VS Code: Shell Command: Install 'code' command in "
            "PATH); `qimg code NAME --print` prints the link to open instead"
        )


def open_in_code(space: Workspace) -> int:
    """`code --remote ssh-remote+HOST FOLDER`: its exit code. VS Code attaching is an attach: the
    image's postAttachCommand is asked for first."""
    if space.attach_hook:
        attach.announce(space.host)
    return processes.foreground(space.argv)
