"""Errors that the CLI turns into one line and an exit code; nothing else should reach the user."""


class QimgError(Exception):
    """A failure the user can act on. `str(error)` is the whole message: what is wrong, how to fix it."""

    exit_code = 1


class UsageError(QimgError):
    """Bad input, found before anything was started."""

    exit_code = 2


class DockerUnavailable(QimgError):
    """The Docker engine does not answer."""


class BuildFailed(QimgError):
    """`docker build` stopped at a step; `step` and `tail` say where and what it printed last."""

    def __init__(self, message: str, step: str = "", tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.step = step
        self.tail = tail
