"""The Docker engine's HTTP API, spoken directly: the few JSON calls the launcher makes (images,
containers, their logs, archives and execs) without the Docker SDK, whose import (requests, urllib3
and its own models) costs every `qimg run --local` 70 ms, a third of what qimg adds to a raw
`docker run`. Push, and a build whose base must be pulled (both need `docker login`'s credentials),
stay with the SDK (`engine.client`); a build on a base the engine has streams here (`build`).

One `Engine` per process, a connection per request (calls come from several threads). The engine
is the one the docker CLI would choose (`docker_context`), reached by `engine_transport`: a unix
socket, tcp (plain or TLS) or ssh.
"""

from __future__ import annotations

import base64
import codecs
import io
import json
import os
import posixpath
import re
import shlex
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from qimg import docker_context, engine_transport
from qimg.engine_transport import EngineTarget, check_host
from qimg.errors import DockerUnavailable, QimgError, UsageError, first_line
from qimg.http1 import BadReply, Response

TIMEOUT = 300.0  # seconds: an image's archive or a slow engine, as the SDK's client was given
_ENGINE_ID = re.compile(r"[0-9a-f]{12,64}")
_FRAME = struct.Struct(">BxxxL")  # a multiplexed stream's frame header: stream (1 out, 2 err), size
# What `logs` keeps of a container's output: its end, as Qarnot keeps a bounded buffer. The engine
# sends the last LOG_LINES lines (it reads its log file from the end); of those, the last LOG_BYTES
# are kept as they stream (a container that printed gigabytes on one line costs no more memory).
LOG_LINES, LOG_BYTES = 20_000, 4 << 20
_READ_CHUNK = 1 << 16
# The most of a reply read whole (JSON, an archive of a few files), and of one message of a build's
# stream: more is no engine's answer, and would be held in memory until it ran out.
MAX_REPLY, MAX_BUILD_MESSAGE = 64 << 20, 4 << 20
_JSON = json.JSONDecoder()


class _Answered:
    """The API version a /_ping reply's header gives (an engine that gives none is taken as 1.24,
    as the docker CLI takes it)."""

    version = ""

    def read(self, reply: Response) -> bytes:
        self.version = reply.getheader("API-Version") or ""
        return reply.read(64)


class EngineError(QimgError):
    """The engine refused a call: its HTTP status and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the Docker engine: {message}")
        self.status, self.message = status, message


class NotFound(EngineError):
    """404: no such image, container or file."""


# The API versions qimg speaks. 1.41 is the oldest it was run against (Debian 12's dockerd 20.10 and
# Podman 4.3 both speak it); 1.44 the newest it asks for: Docker 29 refuses clients below 1.44, and the
# changes from 1.41 to 1.44 leave the fields qimg sends and reads as they were (the deprecated
# NetworkSettings fields it does not read). An engine answers in the lower of its version and 1.44.
MIN_API, MAX_API = (1, 41), (1, 44)
_VERSION = re.compile(r"1\.(\d{1,3})")
negotiated: dict[EngineTarget, str] = {}  # once per command (the process) and engine
_negotiating = threading.Lock()


class EngineTooOld(QimgError):
    """The engine speaks an API older than qimg's oldest."""


def _api_version(text: str, source: str) -> tuple[int, int]:
    matched = _VERSION.fullmatch(text.strip())
    if not matched:
        raise UsageError(f"{source}: not an API version (1.NN): fix it, or unset it to negotiate one")
    return 1, int(matched.group(1))


class Engine:
    def __init__(self, target: EngineTarget, timeout: float = TIMEOUT) -> None:
        check_host(target)
        self.target, self.timeout = target, timeout

    def api_version(self) -> str:
        """The API version every call of this command sends: DOCKER_API_VERSION, else the lower of
        the engine's (its /_ping says) and qimg's newest; asked once per engine and process."""
        with _negotiating:
            if self.target not in negotiated:
                negotiated[self.target] = self._negotiate()
            return negotiated[self.target]

    def _negotiate(self) -> str:
        given = os.environ.get("DOCKER_API_VERSION")
        if given:
            version = _api_version(given, f"DOCKER_API_VERSION={given}")
            if version < MIN_API:
                raise UsageError(
                    f"DOCKER_API_VERSION={given}: qimg speaks API 1.{MIN_API[1]} or later: "
                    "unset it to negotiate"
                )
            return given.strip()
        answered = _Answered()
        self.request("GET", "/_ping", read=answered.read)
        version = _api_version(answered.version or "1.24", f"the engine at {self.target.described}")
        if version < MIN_API:
            raise EngineTooOld(
                f"{self.target.described} speaks Docker API 1.{version[1]}; qimg needs "
                f"1.{MIN_API[1]} or later: upgrade the engine, or point qimg at another one"
            )
        return f"1.{min(version, MAX_API)[1]}"

    @property
    def host(self) -> str:
        return self.target.host

    @classmethod
    def from_env(cls) -> Engine:
        """The engine of this command, as the docker CLI would choose it (`docker_context`)."""
        return cls(docker_context.resolve())

    def request(
        self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
        headers: dict[str, str] | None = None,
        read: Callable[[Response], bytes] | None = None,
    ) -> bytes:  # fmt: skip
        """The reply's body (as `read` reads it from the reply, when given); EngineError (NotFound for
        404) when the engine refuses."""
        versioned = path if path == "/_ping" else f"/v{self.api_version()}{path}"
        url = quote(versioned, safe="/:@") + (f"?{urlencode(query)}" if query else "")
        payload = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if payload is not None and payload is not body else {}
        connection = engine_transport.connection(self.target, self.timeout)
        try:
            connection.request(method, url, payload, {**sent, **(headers or {})})
            reply = connection.getresponse()
            data = read(reply) if read is not None and reply.status < 400 else reply.read(MAX_REPLY + 1)
            if len(data) > MAX_REPLY:
                raise EngineError(0, f"its reply to {method} {path} is longer than {MAX_REPLY >> 20} MiB")
        except (OSError, BadReply) as error:  # refused, reset, a reply cut short
            reason = first_line(connection.failure(error))
            raise DockerUnavailable(engine_transport.unanswered(self.target, reason)) from None
        finally:
            connection.close()
        if reply.status >= 400:
            message = _message(data) or reply.reason
            raise (NotFound if reply.status == 404 else EngineError)(reply.status, message)
        return data

    def call(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        """A call whose reply is JSON (None for an empty one)."""
        data = self.request(method, path, query, body)
        try:
            return json.loads(data) if data.strip() else None
        except ValueError:
            raise EngineError(0, f"{method} {path} was answered with something that is not JSON") from None

    def ping(self) -> None:
        self.request("GET", "/_ping")

    # Images

    def image(self, ref: str) -> dict[str, Any] | None:
        """The image's inspection (None: the engine has no such image)."""
        try:
            found: dict[str, Any] = self.call("GET", f"/images/{ref}/json")
        except NotFound:
            return None
        return found

    def local_image(self, ref: str) -> dict[str, Any]:
        """The image's inspection, or the one refusal that says how to get it."""
        found = self.image(ref)
        if found is None:
            raise UsageError(f"no local image {ref}: build one with `qimg build`, or name an existing image")
        return found

    def require_image(
        self, ref: str, option: str, credentials: Callable[[], tuple[str, str] | None] = lambda: None
    ) -> None:
        """Refuse, as a usage error, an image that is neither local nor in its registry (asked with
        the `credentials` for it, looked up only then)."""
        if self.image(ref) is None and not self.in_registry(ref, credentials()):
            raise UsageError(
                f"{option} {ref}: no such image here or in its registry: check the name, or load it "
                "(docker load)"
            )

    def untag(self, ref: str) -> None:
        """The tag `ref` removed (and its image, when no other tag or container holds it; not its
        parents, the build cache)."""
        self.request("DELETE", f"/images/{ref}", {"noprune": "1"})

    def read_image_files(self, ref: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """The contents of files in a local image (None for one it has not), following symbolic
        links, from one container that is never started."""
        container_id = self.create(container_config(ref, "true", {}, Entrypoint=[]))
        try:
            return {path: self._archived_file(container_id, path) for path in paths}
        finally:
            self.remove(container_id)

    def _archived_file(self, container_id: str, path: str) -> bytes | None:
        import tarfile  # only to read a file of an image qimg did not build: not on every command

        for _ in range(8):  # /etc/os-release is a link to ../usr/lib/os-release on most distros
            archived = self.archive(container_id, path)
            if archived is None:
                return None
            with tarfile.open(fileobj=io.BytesIO(archived)) as archive:
                member = archive.next()
                if member is None:
                    return None
                if member.issym():
                    path = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
                    continue
                content = archive.extractfile(member)
                return content.read() if content else None
        return None

    def in_registry(self, ref: str, auth: tuple[str, str] | None = None) -> bool:
        """Whether the image's registry has it (asked by the engine: its view of the network, its
        mirrors and insecure registries)."""
        headers = {}
        if auth:
            encoded = json.dumps({"username": auth[0], "password": auth[1]}).encode()
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(encoded).decode()
        try:
            self.request("GET", f"/distribution/{ref}/json", headers=headers)
        except EngineError:
            return False
        return True

    def build(self, context: bytes, query: dict[str, Any], on_message: Callable[[Any], None]) -> None:
        """POST /build: the build context (a tar) built by the classic builder, each JSON message of the
        engine's stream handed to `on_message` as it arrives (what it raises ends the build's read)."""

        def read(reply: Response) -> bytes:
            reply.settimeout(None)  # a step may print nothing for long (a compile), as the SDK's build waited
            decoder, text = codecs.getincrementaldecoder("utf-8")("replace"), ""
            while chunk := reply.read1(_READ_CHUNK):
                text += decoder.decode(chunk)
                while text := text.lstrip():
                    try:
                        message, end = _JSON.raw_decode(text)
                    except ValueError:
                        break  # the rest of the message comes in the next chunks
                    on_message(message)
                    text = text[end:]
                if len(text) > MAX_BUILD_MESSAGE:  # what is left is one message, not whole yet
                    raise EngineError(
                        0, f"a message of the build's stream is longer than {MAX_BUILD_MESSAGE >> 20} MiB"
                    )
            if text.strip():
                raise EngineError(0, f"the build's stream ended inside a message: {text[:60]!r}")
            return b""

        headers = {"Content-Type": "application/x-tar"}
        self.request("POST", "/build", query, context, headers, read=read)

    # Containers

    def create(self, config: dict[str, Any]) -> str:
        return engine_id(_field(self.call("POST", "/containers/create", body=config), "Id"))

    def start(self, container_id: str) -> None:
        self.request("POST", f"/containers/{engine_id(container_id)}/start")

    def inspect(self, container_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", f"/containers/{engine_id(container_id)}/json")
        return found

    def containers(self, labels: list[str]) -> list[str]:
        """The ids of every container (running or not) that carries all of `labels` ("KEY=VALUE")."""
        found = self.call("GET", "/containers/json", {"all": "1", "filters": json.dumps({"label": labels})})
        if not isinstance(found, list):
            raise EngineError(0, "the engine's list of containers is not a list")
        return [engine_id(_field(summary, "Id")) for summary in found]

    def logs(self, container_id: str, *, stdout: bool = True, stderr: bool = False) -> str:
        """The end of the container's output: at most LOG_LINES lines and LOG_BYTES bytes, from the
        start of a line."""
        data = self.request(
            "GET",
            f"/containers/{engine_id(container_id)}/logs",
            {"stdout": int(stdout), "stderr": int(stderr), "tail": LOG_LINES},
            read=lambda reply: demultiplexed_tail(reply, LOG_BYTES),
        )
        return data.decode("utf-8", "replace")

    def archive(self, container_id: str, path: str) -> bytes | None:
        """A tar of the path in the container (None: no such path)."""
        try:
            return self.request("GET", f"/containers/{engine_id(container_id)}/archive", {"path": path})
        except NotFound:
            return None

    def exec_run(self, container_id: str, argv: list[str], user: str = "") -> tuple[int, str]:
        """Run a command in a running container: its exit code and its output (stdout and stderr)."""
        created = self.call(
            "POST", f"/containers/{engine_id(container_id)}/exec",
            body={"Cmd": argv, "User": user, "AttachStdout": True, "AttachStderr": True},
        )  # fmt: skip
        exec_id = engine_id(_field(created, "Id"))
        started = self.request("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False})
        out = demultiplexed(started)
        code = _field(self.call("GET", f"/exec/{exec_id}/json"), "ExitCode")
        return code if isinstance(code, int) else -1, out.decode("utf-8", "replace")  # -1: not told

    def remove(self, container_id: str) -> None:
        self.request("DELETE", f"/containers/{engine_id(container_id)}", {"force": "1"})


def container_config(image: str, command: str, environment: dict[str, str], **fields: Any) -> dict[str, Any]:
    """The create call's body: the command split as a shell would (as `docker run IMAGE COMMAND`), the
    image's own when empty."""
    config: dict[str, Any] = {"Image": image, "Env": [f"{key}={value}" for key, value in environment.items()]}
    if command:
        config["Cmd"] = shlex.split(command)
    return {**config, **fields}


def engine_id(value: object) -> str:
    """An id the engine gave (a container's, an exec's), checked before it goes into a path."""
    if not isinstance(value, str) or not _ENGINE_ID.fullmatch(value):
        raise EngineError(0, f"the engine gave an id that is not one: {str(value)[:40]!r}")
    return value


def labels_of(inspected: Any) -> dict[str, str]:
    """The labels of an inspected image or container (its Config.Labels), the text ones only: an
    image's labels are anyone's to write."""
    found = _field(_field(inspected, "Config"), "Labels")
    if not isinstance(found, dict):
        return {}
    return {key: value for key, value in found.items() if isinstance(key, str) and isinstance(value, str)}


def _field(document: Any, name: str) -> Any:
    """A field of a JSON object the engine sent, None when it is not an object or lacks the field."""
    return document.get(name) if isinstance(document, dict) else None


def demultiplexed(data: bytes) -> bytes:
    """The payload of a stream the engine multiplexes (a container without a terminal): each frame
    is an 8-byte header, then that many bytes of stdout or stderr, in the order they were written."""
    out, offset = bytearray(), 0
    while offset + _FRAME.size <= len(data):
        _stream, size = _FRAME.unpack_from(data, offset)
        offset += _FRAME.size
        out += data[offset : offset + size]
        offset += size
    return bytes(out)


def demultiplexed_tail(stream: io.BufferedIOBase | Response, limit: int) -> bytes:
    """The last `limit` bytes of a multiplexed stream's payload, from the start of a line (the whole
    payload when it is shorter), read in chunks: about three times `limit` is held at most."""
    kept, pending = bytearray(), bytearray()  # the payload so far; what is not a whole frame yet
    while chunk := stream.read(_READ_CHUNK):
        pending += chunk
        offset = 0
        while offset + _FRAME.size <= len(pending):
            _stream, size = _FRAME.unpack_from(pending, offset)
            end = offset + _FRAME.size + size
            if end > len(pending):
                break  # the rest of this frame is in the next chunks
            kept += pending[offset + _FRAME.size : end]
            offset = end
        del pending[:offset]
        if len(pending) > 2 * limit + _FRAME.size:  # inside one frame larger than what is kept
            _stream, size = _FRAME.unpack_from(pending, 0)
            cut = len(pending) - _FRAME.size - limit
            del pending[_FRAME.size : _FRAME.size + cut]
            _FRAME.pack_into(pending, 0, 1, size - cut)
            kept.clear()  # all of it comes before this frame's end
        if len(kept) > 2 * limit:
            del kept[: len(kept) - limit]
    kept += pending[_FRAME.size :]  # a last frame cut short: what came of it
    if len(kept) > limit:
        del kept[: len(kept) - limit]
        line_end = kept.find(b"\n")
        del kept[: line_end + 1]  # a line cut at its start is left out (-1 + 1: none ends here)
    return bytes(kept)


def _message(data: bytes) -> str:
    try:
        found = json.loads(data)
    except ValueError:
        return first_line(data.decode("utf-8", "replace"))
    return str(found.get("message", "")) if isinstance(found, dict) else ""
