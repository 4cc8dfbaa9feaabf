"""`qimg jupyter`: a notebook server in the task, reached through the pinned ssh connection.

The server runs as the login user, bound to the task's loopback, with a token qimg draws. The token
reaches it on ssh's stdin (read by the remote shell into the server's environment, JUPYTER_TOKEN):
never in a task constant, in ssh's or the server's command line, or in qimg's output except the
URL the user opens. The browser is given a private local file that redirects to that URL, as
Jupyter itself does, so that the token is not in the browser's command line either.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qimg.errors import QimgError, UsageError
from qimg.launcher import processes, sshconfig
from qimg.launcher.editor import home
from qimg.launcher.records import TaskRecord
from qimg.launcher.session import remote_command
from qimg.launcher.ssh import free_local_port
from qimg.launcher.tunnels import Tunnel, check_port_free

REMOTE_PORT = 8888  # on the task's loopback, where the Qarnot tutorial puts it
DEBIAN_PACKAGE = "jupyter-notebook"  # Debian 12's package of the classic notebook server
# The remote shell's exit codes for what is missing in the image or the session.
NO_JUPYTER, NO_TOKEN = 97, 98
READY_TIMEOUT = 120.0  # seconds for the server to answer once started
# Where a server is looked for in an image the engine has, besides the folders of the image's own PATH:
# Debian's packages, pip's (system and --user). A login shell's profile may add more: there the check
# after login stands.
_USUAL_FOLDERS = ("/usr/local/bin", "/usr/bin", "/bin")
_FOLDER = re.compile(r"/[A-Za-z0-9._/+-]{0,200}")  # a folder of an image's PATH, as qimg reads it
_MAX_FOLDERS = 16

if TYPE_CHECKING:
    from qimg.engine_api import Engine
    from qimg.launcher.plan import LaunchPlan


@dataclass(frozen=True)
class Notebook:
    """What the user asked of the server: the local port and the interface."""

    tunnel: Tunnel
    lab: bool = False
    browser: bool = True

    @property
    def program(self) -> str:
        return "jupyter-lab" if self.lab else "jupyter-notebook"


def plan_notebook(port: int | None, *, lab: bool, browser: bool) -> Notebook:
    """The local port checked (a port, free now; a free one if not given): UsageError otherwise."""
    if port is None:
        port = free_local_port()
    if not 0 < port < 65536:
        raise UsageError(f"invalid --port {port}: a local port from 1 to 65535, e.g. --port 8888")
    tunnel = Tunnel(port, REMOTE_PORT)
    try:
        check_port_free(tunnel)
    except UsageError:
        raise UsageError(f"local port {port} is already in use: pick another (--port {port + 1})") from None
    return Notebook(tunnel, lab=lab, browser=browser)


def missing_hint(program: str) -> str:
    """The one line for an image without the server asked for, and how to build one that has it."""
    how = (
        "`qimg build --base IMAGE` on an image with JupyterLab (pip install jupyterlab), or a devcontainer"
        if program == "jupyter-lab"
        else f"`qimg build --package {DEBIAN_PACKAGE}` (Debian images), or a devcontainer that installs it"
    )
    return f"the image has no {program} on the login user's PATH: build one with {how}"


def require_server(images: Engine, plan: LaunchPlan, notebook: Notebook) -> None:
    """Before the task starts: refuse an image the engine has (--local, or the image pushed from here)
    with no server in the folders where one would be. An image the engine has not is checked by the
    login shell, right after login (`serve`)."""
    ref = plan.request.image
    inspection = images.image(ref)
    if inspection is None:
        return
    folders = dict.fromkeys([
        *image_path(inspection), *_USUAL_FOLDERS, posixpath.join(home(plan.login.user), ".local/bin"),
    ])  # fmt: skip
    found = images.read_image_files(ref, [posixpath.join(folder, notebook.program) for folder in folders])
    if not any(content is not None for content in found.values()):
        raise UsageError(missing_hint(notebook.program))


def image_path(inspection: dict[str, Any]) -> list[str]:
    """The folders of the image's PATH (its Config.Env: outside input), those that are plain absolute
    paths, at most _MAX_FOLDERS."""
    env = (inspection.get("Config") or {}).get("Env") or []
    values = [entry[5:] for entry in env if isinstance(entry, str) and entry.startswith("PATH=")]
    folders = values[-1].split(":") if values else []
    return [folder for folder in folders if _FOLDER.fullmatch(folder)][:_MAX_FOLDERS]


def server_script(notebook: Notebook) -> str:
    """What the login shell runs: the server's check, the token from stdin, then the server itself,
    in the login user's home, logging only its warnings (its own banner would print the token), all of
    its output on stderr (qimg's stdout is the URL's)."""
    program = notebook.program
    return (
        f"command -v {program} >/dev/null 2>&1 || exit {NO_JUPYTER}\n"
        f"IFS= read -r JUPYTER_TOKEN || exit {NO_TOKEN}\n"
        "export JUPYTER_TOKEN\n"
        "cd\n"
        f"exec {program} --no-browser --ip=127.0.0.1 --port={REMOTE_PORT} --port-retries=0 "
        "--log-level=WARN </dev/null >&2\n"
    )


def url(notebook: Notebook, token: str) -> str:
    return f"http://127.0.0.1:{notebook.tunnel.local}/{'lab' if notebook.lab else 'tree'}?token={token}"


def serve(
    notebook: Notebook,
    record: TaskRecord,
    ssh_options: tuple[str, ...],
    say: Callable[[str], None],
    show_url: Callable[[str], None],
    *,
    stops: bool = True,
) -> int:
    """The server on the task's first instance, forwarded, until it ends or Ctrl-C (Interrupted, from
    the caller's handlers): ssh is ended with the wait. Returns 0 once the server ended by itself."""
    token = secrets.token_urlsafe(32)
    host = sshconfig.alias(record.name, record.instances[0].index)
    argv = sshconfig.config_argv(
        host, remote_command(server_script(notebook)),
        options=(*ssh_options, *notebook.tunnel.ssh_option, "-o", "ExitOnForwardFailure=yes"),
    )  # fmt: skip
    with processes.running([argv], stdin=subprocess.PIPE) as (ssh,):
        assert ssh.stdin is not None  # a pipe, as asked
        with contextlib.suppress(BrokenPipeError):  # ssh ended: its exit code says why, below
            ssh.stdin.write(token.encode() + b"\n")
            ssh.stdin.close()
        with tempfile.TemporaryDirectory(prefix="qimg-jupyter-") as private:
            if _answered(notebook, ssh):
                address = url(notebook, token)
                show_url(address)
                if notebook.browser:
                    webbrowser.open(_redirect_page(Path(private), address).as_uri())
                say("Ctrl-C stops the server and the task" if stops else "Ctrl-C stops the server")
            code = ssh.wait()
    if code == NO_JUPYTER:
        raise QimgError(missing_hint(notebook.program))
    if code == NO_TOKEN:
        raise QimgError("the notebook server got no token from qimg: its ssh session ended at once")
    if code:
        raise QimgError(f"the notebook server ended with exit code {code} (its messages are above)")
    return 0


def _answered(notebook: Notebook, ssh: subprocess.Popen[bytes]) -> bool:
    """True once the server answers through the tunnel; False if ssh ended first. QimgError when it
    does not answer in time."""
    deadline = time.monotonic() + READY_TIMEOUT
    probe = f"http://127.0.0.1:{notebook.tunnel.local}/api"  # the version, without a token
    while ssh.poll() is None:
        try:
            with urllib.request.urlopen(probe, timeout=2):
                return True
        except urllib.error.HTTPError:  # an answer all the same
            return True
        except OSError:  # nothing listens yet (URLError is one)
            pass
        if time.monotonic() > deadline:
            raise QimgError(f"the notebook server did not answer within {READY_TIMEOUT:g} s")
        time.sleep(0.2)
    return False


def _redirect_page(folder: Path, address: str) -> Path:
    """A page in `folder` (private, kept while the server runs: the browser may read it late) that
    sends the browser to `address`."""
    page = folder / "open.html"
    target = escape(address, quote=True)
    page.write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={target}"></head>'
        f'<body><a href="{target}">Jupyter</a></body></html>\n'
    )
    return page
