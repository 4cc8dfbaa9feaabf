"""Builds with BuildKit: `docker buildx build` on the engine's own BuildKit (buildx's docker driver, the
builder named after the engine's context), where the docker CLI has the buildx plugin and the engine
builds with BuildKit; otherwise `build.build_image`, the legacy builder through the SDK.

As the docker CLI decides: `DOCKER_BUILDKIT` first (0 forces the legacy builder; 1 requires BuildKit),
else BuildKit unless the engine says it cannot or would rather not (its /_ping: Podman, whose builds
are Buildah's; Windows containers; `Builder-Version: 1`, an engine whose features.buildkit is false).

buildx's plain progress is read as the classic builder's stream is (`build.clean_line`): each vertex's
lines are "#N NAME", then "#N 0.123 OUTPUT" and "#N DONE|CACHED|ERROR: ...". A vertex whose name is
"[2/7] RUN ..." is a step.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from qimg import docker_context
from qimg.builder.build import BUILDKIT, QUIET, BuildOptions, BuildStep, BuiltImage, clean_line, step_failure
from qimg.builder.render import write_context
from qimg.builder.spec import ImageSpec
from qimg.engine_api import Engine
from qimg.errors import BuildFailed, UsageError
from qimg.http1 import Response

# How Go's strconv.ParseBool, which the docker CLI reads DOCKER_BUILDKIT with, spells true and false.
_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")
_VERTEX = re.compile(r"#(\d+) (.*)")
# "[2/7] RUN apt-get ...", or "[stage 2/7] ..." in a Dockerfile of several stages.
# buildx pads the step number to the width of the total: "[ 2/11]", "[dev  2/11]".
_STEP = re.compile(r"\[(?:\S+ )?\s*(\d+)/(\d+)\] (\S+)\s*(.*)")
_PADDING = re.compile(r"^\[ (?=\d+/\d+\])")  # "[ 2/11]" shown as "[2/11]"
_LOGGED = re.compile(r"\d+\.\d+ (.*)")  # a vertex's output line, after the seconds since it started
_ERROR = re.compile(r"ERROR: (.*)")
# BuildKit's words for a failing RUN: "... did not complete successfully: exit code: 100" (newer) or
# "executor failed running [...]: exit code: 100" (the one in Docker 20.10).
_EXIT_CODE = re.compile(r"exit code: (\d+)$")
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
_TAIL_LINES = 15
_STOP_SECONDS = 10.0  # for buildx to cancel the build when qimg is interrupted


def buildx_command(images: Engine) -> list[str] | None:
    """The docker CLI's argv up to `buildx build` for the engine of `images`; None: the legacy builder."""
    env = dict(os.environ)
    chosen = env.get("DOCKER_BUILDKIT", "")
    if chosen and chosen not in (*_TRUE, *_FALSE):
        raise UsageError(
            f"DOCKER_BUILDKIT={chosen}: not a boolean: set it to 0 (the legacy builder) or 1 (BuildKit), "
            "or unset it"
        )
    if chosen in _FALSE:
        return None
    docker = shutil.which("docker", path=env.get("PATH")) or ""
    fix = "set DOCKER_BUILDKIT=0 for the legacy builder"
    if not docker:
        why_not, fix = "no docker CLI on PATH", f"install docker and docker-buildx, or {fix}"
    elif docker_context.cli_plugin("buildx", env) is None:
        why_not, fix = "the docker CLI has no buildx plugin", f"install docker-buildx, or {fix}"
    else:
        why_not = _engine_without_buildkit(images)
    if why_not:
        if chosen:
            raise UsageError(f"DOCKER_BUILDKIT={chosen}: {why_not}: {fix}")
        return None
    # The builder named after the context is the engine's own BuildKit (docker driver), whatever
    # `docker buildx use` chose.
    target = images.target
    if target.context:
        return [docker, "--context", target.context, "buildx", "build", "--builder", target.context]
    return [docker, "buildx", "build", "--builder", "default"]


def _engine_without_buildkit(images: Engine) -> str:
    """Why the engine does not build with BuildKit, from its /_ping headers; "" when it does."""
    headers: dict[str, str] = {}

    def read(reply: Response) -> bytes:
        for name in ("libpod-api-version", "ostype", "builder-version"):
            value = reply.getheader(name)
            if value is not None:
                headers[name] = value
        return reply.read(64)

    images.request("GET", "/_ping", read=read)
    engine = images.target.described
    if "libpod-api-version" in headers:
        return f"{engine} is Podman, which builds with Buildah"
    if headers.get("ostype", "").lower() == "windows":
        return f"{engine} runs Windows containers, which BuildKit does not build"
    if headers.get("builder-version") == "1":
        return f"{engine} prefers the legacy builder (its features.buildkit is false)"
    return ""


def _environment(images: Engine) -> dict[str, str]:
    """qimg's environment for the docker CLI, naming the engine qimg resolved: its DOCKER_HOST, or
    (for a context, given as --context) none; BUILDX_BUILDER is replaced by --builder."""
    replaced = ("DOCKER_HOST", "DOCKER_CONTEXT", "BUILDX_BUILDER")
    env = {name: value for name, value in os.environ.items() if name not in replaced}
    # An image as the legacy builder's, without a provenance attestation (an engine storing images in
    # containerd would keep one beside it); an environment variable, not --provenance=false, which
    # buildx before 0.10 refuses.
    env["BUILDX_NO_DEFAULT_ATTESTATIONS"] = "1"
    if not images.target.context:
        env["DOCKER_HOST"] = images.target.host
    return env


class BuildKitLog:
    """buildx's plain progress read as lines: each step announced to `on_step` once, the output of
    steps to `on_output`, each vertex's last lines kept, and the vertex that failed."""

    def __init__(self, on_step: Callable[[str], None], on_output: Callable[[str], None]) -> None:
        self.steps: dict[int, BuildStep | None] = {}  # vertex -> its step (None: not a step)
        self.tails: dict[int, collections.deque[str]] = {}
        self.failed: tuple[int, str] | None = None  # the vertex that failed first, and why
        self.error = ""  # buildx's own last "ERROR: ..." (a Dockerfile it cannot read, a dead engine)
        self.last = ""  # the last line: the reason when there is no other
        self._on_step = on_step
        self._on_output = on_output

    def feed(self, lines: Iterable[str]) -> None:
        for raw in lines:
            self._take(clean_line(raw))

    def _take(self, line: str) -> None:
        if not line.strip():
            return
        self.last = line
        vertex = _VERTEX.fullmatch(line)
        if vertex is None:
            if error := _ERROR.match(line):
                self.error = error[1]
            return
        number, text = int(vertex[1]), vertex[2]
        if number not in self.steps:
            step = _STEP.fullmatch(text)
            parsed = BuildStep.parse(int(step[1]), int(step[2]), step[3], step[4]) if step else None
            self.steps[number] = parsed
            self.tails[number] = collections.deque(maxlen=_TAIL_LINES)
            if step:
                self._on_step(_PADDING.sub("[", " ".join(text.split()), count=1))
        elif logged := _LOGGED.fullmatch(text):
            self.tails[number].append(logged[1])
            if self.steps[number] is not None:
                self._on_output(logged[1])
        elif (error := _ERROR.match(text)) and self.failed is None:
            self.failed = (number, error[1])

    def failure(self) -> BuildFailed:
        """The error for a build buildx ended with a failure."""
        if self.failed is not None:
            number, reason = self.failed
            step, tail = self.steps.get(number), tuple(self.tails.get(number, ()))
        else:
            step, tail, reason = None, (), self.error or self.last
        code = _EXIT_CODE.search(reason) if step else None
        return step_failure(step, tail, reason, int(code[1]) if code else None)


def build_image(
    buildx: list[str],
    images: Engine,
    spec: ImageSpec,
    tag: str,
    options: BuildOptions = QUIET,
) -> BuiltImage:
    """Build `spec` as `tag` with `buildx` (`buildx_command`) on the engine of `images`, loaded into it
    as the legacy builder's image would be (no attestation). BuildFailed as `build.build_image`."""
    with tempfile.TemporaryDirectory(prefix="qimg-build-") as folder:
        context = Path(folder, "context")
        write_context(spec, context)
        image_id = _build(buildx, images, [str(context)], tag, options)
    size = images.local_image(image_id).get("Size")  # the engine's reply: untrusted
    return BuiltImage(
        id=image_id, tag=tag, size=size if isinstance(size, int) and size >= 0 else 0,
        user=spec.login_user, distro=spec.distro.value, base=spec.base, builder=BUILDKIT,
    )  # fmt: skip


def build_dockerfile(
    buildx: list[str],
    images: Engine,
    context: Path,
    dockerfile: str,
    args: tuple[tuple[str, str], ...],
    target: str | None,
    tag: str,
    options: BuildOptions = QUIET,
) -> str:
    """A project's own Dockerfile (relative to `context`) built as `tag` with `buildx`; the image's ID."""
    recipe = ["--file", str(context / dockerfile)]
    for name, value in args:
        recipe += ["--build-arg", f"{name}={value}"]
    if target:
        recipe += ["--target", target]
    return _build(buildx, images, [*recipe, str(context)], tag, options)


def _build(
    buildx: list[str], images: Engine, operands: list[str], tag: str, options: BuildOptions
) -> str:  # fmt: skip
    """One `docker buildx build` loading its image into the engine of `images`; the image's ID."""
    log = BuildKitLog(options.on_step, options.on_output)
    with tempfile.TemporaryDirectory(prefix="qimg-buildx-") as folder:
        iidfile = Path(folder, "image-id")
        argv = [
            *buildx, "--load", "--progress=plain", "--iidfile", str(iidfile),
            "--tag", tag, *(["--no-cache"] if options.no_cache else []),
            *(["--pull"] if options.pull else []), *operands,
        ]  # fmt: skip
        with subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=_environment(images), text=True, errors="replace",
        ) as process:  # fmt: skip
            try:
                assert process.stderr is not None  # a pipe, as asked
                log.feed(process.stderr)
                finished = process.wait()
            finally:
                _stop(process)
        image_id = iidfile.read_text().strip() if finished == 0 and iidfile.exists() else ""
    if finished != 0:
        raise log.failure()
    if not _IMAGE_ID.fullmatch(image_id):
        raise BuildFailed(f"build failed: docker buildx gave no image id ({image_id[:80]!r}): build again")
    return image_id


def _stop(process: subprocess.Popen[str]) -> None:
    """buildx cancelled (qimg interrupted while it builds): asked to stop, then killed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
