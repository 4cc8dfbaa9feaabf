"""The build's stream, read by qimg on the engine's API (`Engine.build`)."""

from __future__ import annotations

import contextlib
import io
import tarfile
import uuid
from typing import Any

from qimg.engine_api import Engine, NotFound
from qimg.engine_transport import DEFAULT_HOST, LOCAL, EngineTarget


def test_a_build_step_silent_for_longer_than_a_calls_timeout_is_waited_for() -> None:
    """A RUN step that prints nothing for a while (a compile, a download): the engine sends nothing
    until it ends. The build is not cut at the timeout of qimg's other calls (300 s: "the engine does
    not answer"), as the SDK's build, which had none, was not."""
    dockerfile = b"FROM debian:bookworm-slim\nRUN sleep 3\n"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        member = tarfile.TarInfo("Dockerfile")
        member.size = len(dockerfile)
        tar.addfile(member, io.BytesIO(dockerfile))
    engine = Engine(EngineTarget(LOCAL, DEFAULT_HOST), timeout=1)
    tag = f"qimg-test-silent-step:{uuid.uuid4().hex[:12]}"
    messages: list[Any] = []
    try:
        engine.build(archive.getvalue(), {"t": tag, "rm": 1, "forcerm": 1, "nocache": 1}, messages.append)
    finally:
        with contextlib.suppress(NotFound):  # a build that failed tagged nothing
            engine.untag(tag)
    assert {"stream": f"Successfully tagged {tag}\n"} in messages
