"""What the connection tests look at from outside: the ssh processes a test's qimg left, the lines a
long-running qimg writes, and the containers of local tasks."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import IO

import docker
from docker.models.containers import Container

from qimg.launcher.backends.local import NAME_LABEL
from qimg.launcher.ssh import Endpoint, read_banner


def ssh_processes(marker: str) -> list[str]:
    """The command lines of ssh processes (clients, and masters: "ssh: PATH [mux]") that mention
    `marker`, a test's own state directory."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            continue  # ended meanwhile
        if (Path(words[0]).name == "ssh" or words[0].startswith("ssh: ")) and marker in " ".join(words):
            found.append(" ".join(words).strip())
    return found


def no_ssh_left(marker: str, timeout: float = 30) -> None:
    """Poll until no ssh process of the test is left (a master asked to exit takes a moment)."""
    deadline = time.monotonic() + timeout
    while ssh_processes(marker):
        assert time.monotonic() < deadline, ssh_processes(marker)
        time.sleep(0.1)


def wait_for_banner(port: int, timeout: float = 60) -> None:
    """Poll until an sshd banner comes through the local port (a tunnel to port 22 of a task)."""
    deadline = time.monotonic() + timeout
    while not read_banner(Endpoint("127.0.0.1", port)).startswith("SSH-"):
        assert time.monotonic() < deadline, f"nothing forwarded on 127.0.0.1:{port}"
        time.sleep(0.2)


class Lines:
    """The lines a child writes on a pipe, read as they come, waited for with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, fragment: str, timeout: float = 90) -> list[str]:
        """The lines up to the first one holding `fragment`."""
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {fragment!r} in time: {self.seen}") from None
            assert line is not None, f"the stream ended before {fragment!r}: {self.seen}"
            self.seen.append(line)
            got.append(line)
            if fragment in line:
                return got

    def rest(self, timeout: float = 30) -> list[str]:
        """Every line until the stream ends (the child exited)."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while (line := self.lines.get(timeout=max(0.01, deadline - time.monotonic()))) is not None:
            self.seen.append(line)
            got.append(line)
        return got


def task_container(client: docker.DockerClient, name: str) -> Container:
    (container,) = client.containers.list(filters={"label": f"{NAME_LABEL}={name}"})
    return container


def named_tasks(client: docker.DockerClient, *names: str) -> list[str]:
    """The containers of the local tasks named `names` on the engine of `client`, stopped ones included
    (other tests, of other worktrees, may have tasks of their own there)."""
    return [
        container.name or ""
        for name in names
        for container in client.containers.list(all=True, filters={"label": f"{NAME_LABEL}={name}"})
    ]
