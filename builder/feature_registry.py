"""Dev Container features from an OCI registry ("ghcr.io/devcontainers/features/node:1"), read as the Dev
Containers CLI reads them: the reference parsed by its rules (lower case; a registry with a dot, or
localhost; the path and the tag its patterns allow; a tag, `latest` when none, or a sha256 digest), then
the feature's manifest (an OCI manifest whose configuration is `application/vnd.devcontainers`) and its
one layer (a tar of the feature's folder, gzipped or not), fetched through `registry_api` with the
credentials `docker login` stored.

No engine pulls a feature (an artifact, not an image): a feature can be fetched when its registry
answers this machine, as the engine would be asked to pull from it; otherwise the one line says which
feature and which registry. Everything the registry sends is untrusted: the layer's size is capped and
its digest checked (`registry_api`), and its tar is read as regular files and folders only.

What the Dev Containers CLI does that this does not, each refused in one line (tests/unit/
test_feature_registry.py, tests/e2e/test_devcontainer_features.py):
- a feature given by a tarball URL (`https://.../devcontainer-feature-x.tgz`), or by the deprecated
  short id (`node`, GitHub releases): refused, naming the registry form;
- a tar member that is a link, a device, or a path leaving the feature's folder: the CLI's tar extracts
  links; qimg refuses the feature;
- `DEVCONTAINERS_OCI_AUTH` (the CLI's own credentials variable): not read; qimg uses `docker login`'s;
- the `devcontainers-contrib` namespace, which the CLI redirects to `devcontainers-extra`: not redirected
  (qimg fetches what the file names);
- no cache: a feature is fetched at each build (two or three requests), since a cached copy in qimg's
  state would be trusted by later builds.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass

from qimg.builder.spec import ImageRef
from qimg.errors import UsageError

FEATURE_CONFIG = "application/vnd.devcontainers"  # the manifest's configuration type
FEATURE_LAYER = "application/vnd.devcontainers.layer.v1+tar"
FEATURE_LIMIT = 64 << 20  # bytes of one feature's files, from a folder or a registry
_MEMBERS = 10_000  # entries of one feature's tar
_TAR_LIMIT = FEATURE_LIMIT + _MEMBERS * 2048  # the tar of that: files, and each entry's headers and padding

# The CLI's own patterns (its getRef): the path under the registry, and a tag.
_PATH = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?")
_VERSION_SUFFIX = re.compile(r"[:@][^/]*$")  # the CLI's: what follows the resource

FeatureFiles = dict[str, bytes | None]  # a feature's folder: relative POSIX names, None for a folder


class ExecutableFile(bytes):
    """The content of a feature's file that its folder (or its tar) marks executable: it keeps the
    execute bits in the image, as the CLI's tar keeps a file's mode (install.sh may run ./bin/tool)."""


def feature_file(data: bytes, mode: int) -> bytes:
    return ExecutableFile(data) if mode & 0o111 else data


@dataclass(frozen=True)
class FeatureRef:
    """A feature in a registry: REGISTRY/PATH, at a tag or a digest."""

    registry: str  # host[:port]
    path: str  # namespace/id
    version: str  # a tag, or sha256:HEX

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def resource(self) -> str:
        return f"{self.registry}/{self.path}"

    @classmethod
    def parse(cls, reference: str) -> FeatureRef:
        text = reference.lower()
        if text.startswith(("http://", "https://")):
            raise UsageError(
                "features from a tarball URL are not supported",
                hint="name the feature in its OCI registry (REGISTRY/NAMESPACE/ID:VERSION), or copy its "
                'folder beside devcontainer.json and name it "./FOLDER"',
            )
        resource, version = resource_of(text), text[len(resource_of(text)) :]
        if version.startswith("@"):
            version = version[1:]
            if not _DIGEST.fullmatch(version):
                raise UsageError(f"{version!r} is not a sha256 digest", hint="write sha256: and 64 hex")
        elif version:
            version = version[1:]
            if not _TAG.fullmatch(version):
                raise UsageError(f"{version!r} is not a tag", hint="letters, digits and . _ - (up to 128)")
        registry, _, path = resource.partition("/")
        if not path or "/" not in path or not ("." in registry or registry.startswith("localhost")):
            raise UsageError(
                "not a feature in a registry (the short ids of old are deprecated)",
                hint="name it REGISTRY/NAMESPACE/ID, e.g. ghcr.io/devcontainers/features/node:1",
            )
        if not _REGISTRY.fullmatch(registry) or not _PATH.fullmatch(path):
            raise UsageError(
                "not a valid feature reference",
                hint="lower-case letters, digits and . _ - between slashes: REGISTRY/NAMESPACE/ID:VERSION",
            )
        return cls(registry, path, version or "latest")


def resource_of(reference: str) -> str:
    """A feature's reference without its version (how dependsOn and installsAfter name features),
    lower case as the CLI compares them; a local folder's ("./Name") as it is spelled (the CLI
    compares their paths)."""
    text = reference if reference.startswith("./") else reference.lower()
    found = _VERSION_SUFFIX.search(text)
    return text[: found.start()] if found else text


def fetch(ref: FeatureRef) -> FeatureFiles:
    """The files of the feature `ref`, from its registry."""
    from qimg import engine, registry_api

    digest = ref.version if _DIGEST.fullmatch(ref.version) else ""
    name = ImageRef(ref.registry, ref.path, "latest" if digest else ref.version, digest)
    found = registry_api.read_artifact(
        name, ref.version, engine.registry_credentials(ref.registry), (FEATURE_CONFIG, FEATURE_LAYER),
        FEATURE_LIMIT,
    )  # fmt: skip
    if found is None:
        raise UsageError(
            f"the registry {ref.registry} has no {ref.path} at {ref.version}",
            hint="check the feature's name and version",
        )
    try:
        return read_layer(found.layer)
    except UsageError as refused:
        raise registry_api.RegistryError(
            f"the registry {ref.registry} sent {ref.path} at {ref.version} as {refused.message}",
            hint="the feature cannot be installed as it is: ask its publisher",
        ) from None


def read_layer(data: bytes) -> FeatureFiles:
    """A feature's tar (gzipped or not) read into its files: regular files and folders only, every name
    inside the folder, at most FEATURE_LIMIT bytes and _MEMBERS entries."""
    files: FeatureFiles = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(_expanded(data)), mode="r:") as archive:
            for count, member in enumerate(archive, 1):
                if count > _MEMBERS:
                    raise UsageError(f"a tar of more than {_MEMBERS} entries")
                name = posixpath.normpath(member.name)
                if member.name.startswith("/") or name == ".." or name.startswith("../"):
                    raise UsageError(f"a tar whose entry {member.name[:80]!r} leaves the feature's folder")
                if not (member.isfile() or member.isdir()):
                    raise UsageError(f"a tar whose entry {member.name[:80]!r} is not a file or a folder")
                total += member.size
                if total > FEATURE_LIMIT:
                    raise UsageError(f"a tar of more than {FEATURE_LIMIT >> 20} MB")
                extracted = archive.extractfile(member) if member.isfile() else None
                if name != ".":
                    files[name] = feature_file(extracted.read(), member.mode) if extracted else None
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        raise UsageError("a layer that is not a tar") from None
    for name in files:
        parent = posixpath.dirname(name)
        while parent:
            if files.get(parent) is not None:
                raise UsageError(f"a tar whose entry {parent[:80]!r} is both a file and a folder")
            parent = posixpath.dirname(parent)
    return files


def _expanded(data: bytes) -> bytes:
    """The layer's tar: gunzipped if gzipped (as the CLI's node-tar reads it: gzip or plain), at most
    _TAR_LIMIT bytes, so that a small layer that expands to gigabytes (a gzip bomb, or a pax header
    that tarfile would read whole) is refused having expanded no more."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    parts: list[bytes] = []
    size = 0
    while data:
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # one gzip member; several may follow
        while not inflate.eof:  # in steps of 1 MB: zlib's buffer for one call grows by doubling
            parts.append(inflate.decompress(data, 1 << 20))
            size += len(parts[-1])
            if size > _TAR_LIMIT:
                raise UsageError(f"a tar of more than {FEATURE_LIMIT >> 20} MB")
            data = inflate.unconsumed_tail
            if not (parts[-1] or data):
                raise UsageError("a layer that is not a tar")  # cut short
        data = inflate.unused_data.lstrip(b"\0")  # zeros after the gzip: padding, as gzip reads it
    return b"".join(parts)
