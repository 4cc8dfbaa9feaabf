"""A devcontainer's postAttachCommand, run when qimg attaches a session to a task: the interactive
session of `run` and `ssh`, and VS Code opened by `code`. A command run through ssh (`ssh NAME -- CMD`,
`run --command`) and tunnels alone are no attach, as the Dev Containers tools attach only for a user's
session.

qimg asks; the task answers: `qimg-lifecycle attached`, run as the login user over the pinned
connection, appends a line that the task's lifecycle runner (root, started by qimg-start) follows, and
the hook runs there, in the background, its output in `qimg logs`. Asking takes one short ssh command; a
failure to ask is a warning, never the end of the session.
"""

from __future__ import annotations

import subprocess

from qimg import notices
from qimg.launcher import sshconfig

LIFECYCLE = "/usr/local/sbin/qimg-lifecycle"
TRIGGER = f"{LIFECYCLE} attached"
_TIMEOUT = 30.0  # seconds: the trigger appends one line
_NOT_FOUND = 127  # the login shell's exit code for a command it cannot find


def announce(host: str, ssh_options: tuple[str, ...] = ()) -> None:
    """Ask the task behind `host` (a qimg entry) to run its postAttachCommand."""
    argv = sshconfig.config_argv(host, TRIGGER, options=("-o", "BatchMode=yes", *ssh_options))
    try:
        asked = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            timeout=_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        notices.warn(
            f"the image's postAttachCommand was not started: {host} did not answer in {_TIMEOUT:g} s"
        )
        return
    if asked.returncode == _NOT_FOUND:  # said the same whatever the login shell (sh, bash, ...)
        notices.warn(
            f"the image's postAttachCommand was not started: the task has no {LIFECYCLE}, though the "
            "image's labels say it has the hook (rebuild it with qimg build --devcontainer)"
        )
    elif asked.returncode != 0:
        said = (asked.stderr.strip().splitlines() or [f"exit code {asked.returncode}"])[-1]
        notices.warn(f"the image's postAttachCommand was not started: {said[:200]}")
