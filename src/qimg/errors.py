"""Every error the user can see: the CLI turns each into one line and an exit code.

Modules raise these (never print). An error carries all the entry point shows (pip's
`DiagnosticPipError` model): its message (what is wrong), its hint (how to fix it) and its details
(the context lines shown above it: a build step's last output, what a failed task printed).
`str(error)` is the one line: the message, then the hint after "; ".
"""

from __future__ import annotations

import errno
import signal
from pathlib import Path


class QimgError(Exception):
    """A failure the user can act on: `message`, `hint`, and `details` shown under `details_title`
    (plain text: the entry point escapes them)."""

    exit_code = 1

    def __init__(
        self, message: str, *, hint: str = "", details: tuple[str, ...] = (), details_title: str = ""
    ) -> None:
        super().__init__(f"{message}; {hint}" if hint else message)
        self.message, self.hint = message, hint
        self.details, self.details_title = details, details_title


class UsageError(QimgError):
    """Bad input, found before anything was started."""

    exit_code = 2


class FileError(QimgError):
    """A file qimg reads or writes (its state, an ssh config, a key) cannot be: a folder or a file in
    the way, no permission, a read-only file system, a full disk."""

    @classmethod
    def of(cls, action: str, path: Path, error: OSError) -> FileError:
        """The error "cannot ACTION PATH: the system's reason; what to do about it"."""
        return cls(f"cannot {action} {path}: {error.strerror or error}", hint=_file_fix(action, path, error))


def _file_fix(action: str, path: Path, error: OSError) -> str:
    if error.errno == errno.EISDIR:
        return "a folder is in its place: move it away"
    if error.errno in (errno.ENOTDIR, errno.EEXIST):  # a file where a folder of the path should be
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        return f"{blocker} is a file where a folder belongs: move it away" if blocker else ""
    if error.errno in (errno.EACCES, errno.EPERM):
        if action == "read":
            return "check its permissions"
        # Writes go through a new file renamed into place: what must be writable is the folder.
        folder = next((p for p in path.parents if p.is_dir()), path.parent)
        return f"make {folder} writable by you"
    if error.errno == errno.EROFS:
        return "the file system is read-only: use a writable folder"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk (or your quota) is full: free some space and retry"
    return ""


class DockerUnavailable(QimgError):
    """The Docker engine does not answer."""


class BuildFailed(QimgError):
    """`docker build` stopped: `step` is the printable "step 5/9 (RUN apt-get ...)" ("" when the build
    stopped before its first step), `tail` that step's own last lines, plain text (its details)."""

    def __init__(
        self,
        message: str,
        step: str = "",
        tail: tuple[str, ...] = (),
        *,
        number: int = 0,
        total: int = 0,
        instruction: str = "",
        summary: str = "",
        command_exit_code: int | None = None,
    ) -> None:
        super().__init__(message, details=tail, details_title=f"last output of {step or 'the build'}:")
        self.step = step
        self.tail = tail
        self.number = number  # 1-based index of the failing step, 0 before the first one
        self.total = total  # how many steps the Dockerfile has, 0 before the first one
        self.instruction = instruction  # RUN, COPY, FROM ...
        self.summary = summary  # the instruction and the start of its arguments
        # Not `exit_code`: QimgError.exit_code is qimg's own, which the CLI exits with.
        self.command_exit_code = command_exit_code  # of the failing RUN, when the engine gives one


class PushFailed(QimgError):
    """The registry refused the push, or does not hold what the engine said it pushed."""


class BackendError(QimgError):
    """The place that runs tasks (Qarnot, the local engine) refused or failed a request."""


class ResultsUploading(BackendError):
    """A task being stopped is still uploading its results (or its state was last seen so): it must
    not be deleted now. `interrupted`: the signal that ended the wait, if one did."""

    def __init__(self, message: str, interrupted: Interrupted | None = None) -> None:
        super().__init__(message)
        self.interrupted = interrupted


class CreatedButFailed(BackendError):
    """The task was created (`task_id`), then a request that completes its setup failed: the launch
    stops it like any task it made."""

    def __init__(self, message: str, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class CreationUnresolved(BackendError):
    """A task creation whose outcome is unknown (no reply, a gateway error) and that no listing has
    settled: a task of the launch may still appear, so its record is kept for `qimg stop NAME`.
    Exits 128 + the signal's number when a signal cut the reconciliation short."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        if signum is not None:
            self.exit_code = 128 + signum


class TaskNotFound(QimgError):
    """No task of that name or id (any more)."""


class NotReady(QimgError):
    """sshd did not accept a login before the deadline."""


class LaunchFailed(QimgError):
    """The task failed or was stopped before it was ready; `details` says what it printed."""

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(message, details=details)


class Interrupted(QimgError):
    """Ctrl-C, SIGTERM or SIGHUP: exits 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error from a library (they can run to pages), cut to `limit`."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else "unknown error"
    return text.splitlines()[0][:limit]
