"""Build an image from a rendered context, streaming its progress: on the engine's API, or with the
Docker SDK where the base image must be pulled (with `docker login`'s credentials).

The classic builder's stream is terminal output: coloured stderr, carriage-return progress and lines
cut across chunks. It is read here into plain lines, so nothing handed out carries engine escapes.
"""

from __future__ import annotations

import collections
import io
import os
import re
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qimg import engine, state
from qimg.builder import distro
from qimg.builder.render import write_context
from qimg.builder.spec import ImageRef, ImageSpec, check_image_ref
from qimg.engine_api import Engine, EngineError
from qimg.errors import BuildFailed

if TYPE_CHECKING:
    import docker

# "Step 5/9 : RUN apt-get update ...": how the classic builder announces each instruction; Podman's
# (Buildah's) says "STEP 5/9: RUN ...".
_STEP = re.compile(r"(?:Step|STEP) (\d+)/(\d+) ?: (\S+)\s*(.*)")
# The builders' bookkeeping, which says nothing about the build itself (Podman's: "--> ID", "COMMIT REF",
# and the new image's whole ID on a line of its own).
_NOISE = re.compile(
    r"^\s*(---> |--> |Running in |Removing intermediate container |Successfully (built|tagged) |COMMIT )"
    r"|^[0-9a-f]{64}$"
)
# How the engine words a failing RUN: the exit code when errorDetail carries none (Docker: "... returned a
# non-zero code: 100"; Podman: "... while running runtime: exit status 100").
_EXIT_CODE = re.compile(r"(?:returned a non-zero code:|: exit status) (\d+)")
# Terminal control sequences: CSI (colours, cursor moves, line erasing; the engine wraps every stderr
# write in \x1b[91m ... \x1b[0m), the string ones (OSC titles and links, DCS ...) up to their end or
# the end of the line, then the two-character escapes (charsets, keypad modes).
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_].*?(?:\x07|\x1b\\|$)|\x1b[ -/]*[0-~]")
# Whatever else a terminal would not print (C0, DEL, C1), tab aside: it aligns columns.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_TAIL_LINES = 15
# Which builder made an image, as the build's output and its JSON say.
LEGACY, BUILDKIT = "legacy", "buildkit"
_SUMMARY_CHARS = 60  # of a step's arguments: enough to recognise it, never the whole RUN script
_REASON_CHARS = 200  # of an engine message other than an exit code, which may quote a command


@dataclass(frozen=True)
class BuildStep:
    number: int
    total: int
    instruction: str
    summary: str

    def __str__(self) -> str:
        return f"step {self.number}/{self.total} ({self.summary})"

    @classmethod
    def parse(cls, number: int, total: int, instruction: str, arguments: str) -> BuildStep:
        """A step as a builder announces it: its summary is the start of its arguments, on one line."""
        summary = f"{instruction.upper()} {_shorten(arguments, _SUMMARY_CHARS)}".rstrip()
        return cls(number, total, instruction.upper(), summary)


def clean_line(raw: str) -> str:
    """One line of engine output as a terminal leaves it: no escape sequences, the last rewrite of a
    carriage-return progress line, no control character but tab, no trailing blanks."""
    rewrites = [_CONTROL.sub("", part).rstrip() for part in _ESCAPE.sub("", raw).split("\r")]
    return next((part for part in reversed(rewrites) if part.strip()), "")


def _shorten(text: str, limit: int) -> str:
    """`text` on one line (runs of blanks made one space), cut to `limit` characters with "..."."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rstrip() + "..."


def step_failure(
    step: BuildStep | None, tail: tuple[str, ...], reason: str, exit_code: int | None
) -> BuildFailed:
    """The error for a build that stopped at `step` (None: before its first step) for the builder's
    `reason`, with the step's last lines."""
    plain = " ".join(clean_line(line) for line in reason.splitlines())
    # With an exit code the engine's text only repeats the whole command: the code says it all.
    what = f"exit code {exit_code}" if exit_code is not None else _shorten(plain, _REASON_CHARS)
    where = f"at {step}" if step else "before its first step"
    return BuildFailed(
        f"build failed {where}: {what or 'the engine gave no reason'}", str(step or ""), tail,
        number=step.number if step else 0, total=step.total if step else 0,
        instruction=step.instruction if step else "", summary=step.summary if step else "",
        command_exit_code=exit_code,
    )  # fmt: skip


class BuildLog:
    """The classic builder's `stream` text read as plain lines: the step running, that step's own last
    lines, and each complete line handed to `on_step` or `on_output` as it arrives."""

    def __init__(self, on_step: Callable[[str], None], on_output: Callable[[str], None]) -> None:
        self.step: BuildStep | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._pending = ""
        self._on_step = on_step
        self._on_output = on_output

    def feed(self, text: str) -> None:
        # Chunks are the engine's writes, not lines: apt's "E", ": " and "Unable to locate ..." may
        # come as three, each in its own colour codes, with the reset code after the newline.
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._take(clean_line(line))

    def flush(self) -> None:
        """Take the last line, which the stream may end without a newline."""
        pending, self._pending = self._pending, ""
        self._take(clean_line(pending))

    def failure(self, reason: str, exit_code: int | None) -> BuildFailed:
        """The error for the engine's `reason` at the current step, with its tail."""
        self.flush()
        if exit_code is None and (found := _EXIT_CODE.search(reason)):
            exit_code = int(found[1])
        return step_failure(self.step, tuple(self.tail), reason, exit_code)

    def _take(self, line: str) -> None:
        step = _STEP.fullmatch(line)
        # Only the next step number counts as a step: a command may print "Step 1/2 : ..." itself.
        if step and int(step[1]) == (self.step.number if self.step else 0) + 1:
            self.step = BuildStep.parse(int(step[1]), int(step[2]), step[3], step[4])
            self.tail.clear()
            self._on_step(" ".join(line.split()))
        elif line.strip() and not _NOISE.match(line):
            self.tail.append(line)
            self._on_output(line)


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    size: int
    user: str
    distro: str
    base: str
    builder: str = LEGACY

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "tag": self.tag, "size": self.size,
            "user": self.user, "distro": self.distro, "base": self.base, "builder": self.builder,
        }  # fmt: skip


def _unshown(text: str) -> None:
    """Progress that nobody shows."""


@dataclass(frozen=True)
class BuildOptions:
    """How a build runs, one value from the command to the builder (legacy or BuildKit): every step
    again (`no_cache`), a newer base first (`pull`), and where its progress goes, as plain lines."""

    no_cache: bool = False
    pull: bool = False
    on_step: Callable[[str], None] = _unshown
    on_output: Callable[[str], None] = _unshown


QUIET = BuildOptions()


def default_tag(spec: ImageSpec) -> str:
    return f"qimg/{spec.login_user}:latest"


def build_image(
    client: docker.DockerClient | Engine,
    spec: ImageSpec,
    tag: str,
    options: BuildOptions = QUIET,
) -> BuiltImage:
    """Build `spec` as `tag`, through the SDK's `client` or the engine's API itself (an `Engine`: no SDK
    to import, for a base image the engine has). Raises BuildFailed with the failing step, the exit
    code and the step's last output lines; the callbacks get plain lines, without escape codes."""
    log = BuildLog(options.on_step, options.on_output)
    stream = _Stream(log)
    with tempfile.TemporaryDirectory(prefix="qimg-build-") as context:
        write_context(spec, Path(context))
        if isinstance(client, Engine):
            _build_on(client, Path(context), tag, options.no_cache, options.pull, stream.take, log)
        else:
            _build_with_sdk(client, context, tag, options.no_cache, options.pull, stream.take, log)
    image_id = stream.image_id
    if isinstance(client, Engine):
        found = client.image(image_id or tag) or {}
        found_id, size = str(found.get("Id", "")), found.get("Size", 0)
    else:
        image = client.images.get(image_id or tag)
        found_id, size = image.id or "", image.attrs.get("Size", 0)
    return BuiltImage(
        id=found_id, tag=tag, size=int(size) if isinstance(size, int) else 0,
        user=spec.login_user, distro=spec.distro.value, base=spec.base,
    )  # fmt: skip


class _Stream:
    """The classic builder's JSON messages taken one by one: an error raised as the build's failure,
    the image's ID kept, the rest fed to the log."""

    def __init__(self, log: BuildLog) -> None:
        self.log, self.image_id = log, ""

    def take(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            code = detail.get("code")
            reason = str(chunk.get("error") or detail.get("message") or "")
            raise self.log.failure(reason, code if isinstance(code, int) else None)
        self.image_id = chunk.get("aux", {}).get("ID", self.image_id)
        self.log.feed(str(chunk.get("stream", "")))


def _build_with_sdk(
    client: docker.DockerClient, context: str, tag: str, no_cache: bool, pull: bool,
    take: Callable[[Any], None], log: BuildLog, **options: Any,
) -> None:  # fmt: skip
    """`options`: more of the SDK's build arguments (a project's Dockerfile, its args and target)."""
    from docker.errors import APIError

    try:
        # forcerm: no container of a failed step is left behind.
        chunks = client.api.build(
            path=context, tag=tag, rm=True, forcerm=True, nocache=no_cache, pull=pull, decode=True, **options
        )
        for chunk in chunks:
            take(chunk)
        log.flush()
    except APIError as error:
        raise log.failure(str(error.explanation or error), None) from None


def _build_on(
    engine: Engine, context: Path, tag: str, no_cache: bool, pull: bool,
    take: Callable[[Any], None], log: BuildLog,
) -> None:  # fmt: skip
    """The SDK's build call, made on the engine's API: the context tarred as the SDK tars it (each
    file's own header: the COPY steps' cache keys are the same), the same options."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name in sorted(os.listdir(context)):
            tar.add(context / name, arcname=name, recursive=False)
    query = {"t": tag, "rm": 1, "forcerm": 1, "nocache": int(no_cache), "pull": int(pull)}
    try:
        engine.build(archive.getvalue(), query, take)
        log.flush()
    except EngineError as error:
        raise log.failure(error.message, None) from None


def build(
    spec: ImageSpec,
    distro_choice: str,
    tag: str | None,
    options: BuildOptions = QUIET,
) -> BuiltImage:
    """`qimg build`: the base image checked, its distro read when `distro_choice` is "auto", the image
    built (as `tag`, default qimg/USER:latest; with BuildKit where the engine and the docker CLI have
    it, `buildkit.buildx_command`) and remembered for check, push and run --local."""
    from qimg.builder import buildkit

    image_tag = check_image_ref(tag, "--tag") if tag else default_tag(spec)
    images = Engine.from_env()
    buildx = buildkit.buildx_command(images)  # first: a DOCKER_BUILDKIT qimg cannot honour starts nothing
    images.require_image(
        spec.base, "--base", lambda: engine.registry_credentials(ImageRef.parse(spec.base, "--base").registry)
    )
    spec = replace(spec, distro=distro.resolve(distro_choice, spec.base, images))
    if buildx is None:
        # A base to pull needs the SDK's registry credentials; one the engine has, no SDK at all (its
        # import was a fifth of a no-op rebuild).
        fetches = options.pull or images.image(spec.base) is None
        built = build_image(engine.client() if fetches else images, spec, image_tag, options)
    else:
        built = buildkit.build_image(buildx, images, spec, image_tag, options)
    state.remember(state.LAST_BUILT, built.tag)
    return built


def build_dockerfile(
    context: Path,
    dockerfile: str,
    args: tuple[tuple[str, str], ...],
    target: str | None,
    tag: str,
    options: BuildOptions = QUIET,
) -> str:
    """A project's own Dockerfile (`dockerfile`, relative to `context`) built as `tag` by the builder
    `build` uses, with the same progress; the image's ID. BuildFailed as `build_image`. The legacy
    builder's context is the SDK's (its .dockerignore read, a base pulled with `docker login`'s
    credentials)."""
    from qimg.builder import buildkit

    images = Engine.from_env()
    buildx = buildkit.buildx_command(images)
    if buildx is not None:
        return buildkit.build_dockerfile(buildx, images, context, dockerfile, args, target, tag, options)
    log = BuildLog(options.on_step, options.on_output)
    stream = _Stream(log)
    recipe: dict[str, Any] = {"dockerfile": dockerfile, "buildargs": dict(args)}
    if target:
        recipe["target"] = target
    _build_with_sdk(
        engine.client(), str(context), tag, options.no_cache, options.pull, stream.take, log, **recipe
    )
    found = images.image(stream.image_id or tag) or {}
    return str(found.get("Id", ""))
