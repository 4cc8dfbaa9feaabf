"""Features from a registry, the parts that need no registry: references read as the Dev Containers CLI
reads them, a feature's tar read as untrusted input, and the install order of dependsOn and
installsAfter. (The fetch itself, from a real registry: tests/e2e/test_devcontainer_features.py.)"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from qimg.builder import devcontainer, devcontainer_build
from qimg.builder.feature_registry import ExecutableFile, FeatureRef, read_layer, resource_of
from qimg.errors import UsageError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("reference", "registry", "path", "version"),
    [
        ("ghcr.io/devcontainers/features/node:1", "ghcr.io", "devcontainers/features/node", "1"),
        ("ghcr.io/devcontainers/features/node", "ghcr.io", "devcontainers/features/node", "latest"),
        ("GHCR.io/Devcontainers/Features/Node:1.2", "ghcr.io", "devcontainers/features/node", "1.2"),
        (f"localhost:5000/team/f/hello@{DIGEST}", "localhost:5000", "team/f/hello", DIGEST),
        ("registry.example.com:8443/a/b_c-d.e:v1_0", "registry.example.com:8443", "a/b_c-d.e", "v1_0"),
    ],
)
def test_references_as_the_cli_reads_them(reference: str, registry: str, path: str, version: str) -> None:
    ref = FeatureRef.parse(reference)
    assert (ref.registry, ref.path, ref.version) == (registry, path, version)
    assert ref.resource == resource_of(reference) == f"{registry}/{path}"


@pytest.mark.parametrize(
    ("reference", "refusal"),
    [
        ("node", "short ids"),
        ("ghcr.io/node:1", "short ids"),  # no namespace: the CLI's path pattern refuses "/node"
        ("devcontainers/features/node", "short ids"),  # no registry
        ("https://example.com/devcontainer-feature-x.tgz", "tarball URL"),
        ("ghcr.io/a/b@sha256:1234", "not a sha256 digest"),
        ("ghcr.io/a/b:-bad", "not a tag"),
        ("ghcr.io/a//b:1", "not a valid feature reference"),
        ("ghcr.io/a/b$c:1", "not a valid feature reference"),
    ],
)
def test_references_refused(reference: str, refusal: str) -> None:
    with pytest.raises(UsageError, match=refusal):
        FeatureRef.parse(reference)


def tar(entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info in entries:
            content = (data or {}).get(info.name, b"")
            if info.isfile():
                info.size = len(content)
            archive.addfile(info, io.BytesIO(content) if info.isfile() else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_a_layer_read_gzipped_or_not() -> None:
    plain = tar([entry("./"), entry("./install.sh"), entry("./lib", tarfile.DIRTYPE)], {"./install.sh": b"x"})
    assert read_layer(plain) == {"install.sh": b"x", "lib": None}
    assert read_layer(gzip.compress(plain)) == read_layer(plain)


@pytest.mark.parametrize(
    ("member", "refusal"),
    [
        (entry("link", tarfile.SYMTYPE, "/etc/shadow"), "is not a file or a folder"),
        (entry("hard", tarfile.LNKTYPE, "install.sh"), "is not a file or a folder"),
        (entry("dev", tarfile.CHRTYPE), "is not a file or a folder"),
        (entry("fifo", tarfile.FIFOTYPE), "is not a file or a folder"),
        (entry("../escape.sh"), "leaves the feature's folder"),
        (entry("a/../../escape.sh"), "leaves the feature's folder"),
        (entry("/etc/cron.d/x"), "leaves the feature's folder"),
    ],
)
def test_a_hostile_layer_refused(member: tarfile.TarInfo, refusal: str) -> None:
    with pytest.raises(UsageError, match=refusal):
        read_layer(tar([entry("install.sh"), member]))


def test_a_layer_that_is_no_tar_or_too_large() -> None:
    with pytest.raises(UsageError, match="not a tar"):
        read_layer(b"\x1f\x8b not really gzip")
    huge = entry("big")
    huge.size = (64 << 20) + 1
    header = huge.tobuf()  # a header that claims more than the limit, with no content behind it
    with pytest.raises(UsageError, match="more than 64 MB"):
        read_layer(header + b"\0" * 1024)


def local_features(tmp_path: Path, features: dict[str, dict[str, object]], order: list[str]) -> Path:
    folder = tmp_path / ".devcontainer"
    for name, metadata in features.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "install.sh").write_text("#!/bin/sh\n")
        (folder / name / "devcontainer-feature.json").write_text(json.dumps({"id": name, **metadata}))
    config = folder / "devcontainer.json"
    listed: dict[str, object] = {f"./{name}": {} for name in order}
    config.write_text(json.dumps({"image": "debian:bookworm-slim", "features": listed}))
    return config


def test_features_install_after_those_they_name(tmp_path: Path) -> None:
    config = local_features(
        tmp_path,
        {
            "app": {"dependsOn": {"./lib:1": {}}},
            "lib": {"installsAfter": ["./base"]},
            "base": {},
            "other": {},
        },
        ["app", "other", "lib", "base"],
    )
    assert [feature.id for feature in devcontainer.read(config).features] == ["other", "base", "lib", "app"]


def test_a_dependency_not_listed_or_a_cycle_refused(tmp_path: Path) -> None:
    missing = local_features(tmp_path / "1", {"app": {"dependsOn": {"ghcr.io/x/y/lib:1": {}}}}, ["app"])
    not_listed = r'features "\./app": it depends on ghcr\.io/x/y/lib, which is not listed'
    with pytest.raises(UsageError, match=not_listed):
        devcontainer.read(missing)
    cycle = local_features(
        tmp_path / "2", {"a": {"installsAfter": ["./b"]}, "b": {"dependsOn": {"./a": {}}}}, ["a", "b"]
    )
    with pytest.raises(UsageError, match="depend on each other in a cycle"):
        devcontainer.read(cycle)
    hooked = local_features(tmp_path / "3", {"a": {"postCreateCommand": {"x": 1}}}, ["a"])
    with pytest.raises(UsageError, match=r'features "\./a" postCreateCommand\.x: a number is not a command'):
        devcontainer.read(hooked)


def test_features_hooks_run_before_the_files_in_install_order(tmp_path: Path) -> None:
    config = local_features(
        tmp_path,
        {"a": {"postStartCommand": "echo a", "installsAfter": ["./b"]},
         "b": {"postStartCommand": {"one": "echo b1", "two": ["echo", "b2"]}, "onCreateCommand": "echo b"}},
        ["a", "b"],
    )  # fmt: skip
    document = json.loads(config.read_text())
    config.write_text(json.dumps({**document, "postStartCommand": "echo file", "onCreateCommand": "echo f"}))
    read = devcontainer.read(config)
    shown = [(hook.name, [(name, command.script) for name, command in hook.commands]) for hook in read.hooks]
    assert shown == [
        ("onCreateCommand", [("feature b", "echo b")]),
        ("onCreateCommand", [("", "echo f")]),
        ("postStartCommand", [("feature b one", "echo b1"), ("feature b two", "echo b2")]),
        ("postStartCommand", [("feature a", "echo a")]),
        ("postStartCommand", [("", "echo file")]),
    ]


def test_override_feature_install_order_goes_first_within_dependencies(tmp_path: Path) -> None:
    features: dict[str, dict[str, object]] = {"a": {}, "b": {"dependsOn": {"./c": {}}}, "c": {}, "d": {}}
    config = local_features(tmp_path, features, ["a", "b", "c", "d"])
    document = json.loads(config.read_text())
    config.write_text(json.dumps({**document, "overrideFeatureInstallOrder": ["./d", "./b"]}))
    # d first; b next, but only after c, which it depends on; then a, in the order listed.
    assert [feature.id for feature in devcontainer.read(config).features] == ["d", "c", "b", "a"]
    config.write_text(json.dumps({**document, "overrideFeatureInstallOrder": ["./e"]}))
    with pytest.raises(
        UsageError, match=r"overrideFeatureInstallOrder: '\./e' is not one of the features listed"
    ):
        devcontainer.read(config)


def pax_bomb(expanded: int) -> bytes:
    """A gzipped tar whose first member is a pax header of `expanded` bytes: a layer of a few hundred
    kilobytes that tarfile would read whole into memory before it yields any member."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, expanded
    stream = io.BytesIO()
    with gzip.GzipFile(fileobj=stream, mode="wb", compresslevel=9) as packed:
        packed.write(header.tobuf(tarfile.USTAR_FORMAT))
        chunk = b"0" * (1 << 20)
        for _ in range(expanded >> 20):
            packed.write(chunk)
    return stream.getvalue()


@pytest.mark.parametrize("packing", ["gzip", "xz"])
def test_a_layer_that_expands_past_the_limit_is_refused_without_expanding_it(packing: str) -> None:
    """A decompression bomb: the layer is small (within the registry's cap), its tar is not. It is
    refused having held no more than the limit in memory; and xz, which the Dev Containers CLI does not
    read (node-tar: gzip or plain), is no tar either."""
    import lzma
    import tracemalloc

    layer = pax_bomb(256 << 20)
    if packing == "xz":
        layer = lzma.compress(gzip.decompress(layer))
    assert len(layer) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=r"more than 64 MB|not a tar"):
            read_layer(layer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20, f"{peak >> 20} MB held to refuse a {len(layer) >> 10} kB layer"


def test_option_names_give_the_variables_the_cli_gives() -> None:
    """The CLI's getSafeId (JavaScript: \\w and \\d are ASCII): what is not an ASCII letter, digit or _
    becomes _, so that devcontainer-features.env stays a shell script."""
    assert devcontainer.option_variable("café") == "CAF_"
    assert devcontainer.option_variable("٣x") == "_X"
    assert devcontainer.option_variable("ß") == "_"
    assert devcontainer.option_variable("installZsh") == "INSTALLZSH"
    assert devcontainer.option_variable("a-b.c") == "A_B_C"


def feature_with(tmp_path: Path, metadata: str, options: object = None) -> Path:
    folder = tmp_path / ".devcontainer"
    (folder / "f").mkdir(parents=True)
    (folder / "f" / "install.sh").write_text("#!/bin/sh\n")
    (folder / "f" / "devcontainer-feature.json").write_text(metadata)
    config = folder / "devcontainer.json"
    config.write_text(json.dumps({"image": "debian:bookworm-slim", "features": {"./f": options or {}}}))
    return config


@pytest.mark.parametrize(
    ("metadata", "refusal"),
    [
        ("[" * 100_000, "is not valid JSON"),  # nested past Python's stack: json5 recurses
        ("id: f\n", "is not valid JSON"),
        ('{"id": "f", "description": "' + "x" * (1 << 20) + '"}', "of at most 1 MB"),
        (r'{"id": "f\n$(reboot)"}', "has no valid id"),
        (r'{"id": "f", "options": {"o": {"type": "string", "default": "a\nb"}}}', "a control character"),
        ('{"id": "f", "options": {"": {"type": "string", "default": "x"}}}', "no variable"),
        ('{"id": "f", "options": {"-": {"type": "string", "default": "x"}}}', "no variable"),
    ],
)
def test_a_hostile_feature_metadata_refused_in_one_line(tmp_path: Path, metadata: str, refusal: str) -> None:
    with pytest.raises(UsageError, match=refusal):
        devcontainer.read(feature_with(tmp_path, metadata))


def test_local_features_named_as_their_folders_are_spelled(tmp_path: Path) -> None:
    """The CLI compares local features by their paths, case kept: "./Base" in installsAfter,
    dependsOn and overrideFeatureInstallOrder is the folder ./Base (only registry references are
    lower-cased)."""
    config = local_features(
        tmp_path,
        {"App": {"installsAfter": ["./Base"]}, "Base": {}, "Lib": {"dependsOn": {"./Base": {}}}},
        ["App", "Lib", "Base"],
    )
    assert [feature.id for feature in devcontainer.read(config).features] == ["Base", "App", "Lib"]
    document = json.loads(config.read_text())
    config.write_text(json.dumps({**document, "overrideFeatureInstallOrder": ["./Lib"]}))
    assert [feature.id for feature in devcontainer.read(config).features] == ["Base", "Lib", "App"]


@pytest.mark.parametrize("order", [["lib", "lib/x.sh"], ["lib/x.sh", "lib"]])
def test_a_layer_with_a_file_where_a_folder_is_refused(order: list[str]) -> None:
    """A name both a file and a folder (in either order): no folder holds it, and the image's ADD of it
    would fail half-way through the build."""
    with pytest.raises(UsageError, match="is both a file and a folder"):
        read_layer(tar([entry("install.sh"), *(entry(name) for name in order)]))


def test_execute_bits_kept_from_a_tar_and_from_a_folder(tmp_path: Path) -> None:
    """As the CLI's tar keeps a file's mode: an executable stays one in the feature's archive."""
    tool, data = entry("bin/tool"), entry("share/data")
    tool.mode, data.mode = 0o755, 0o644
    files = read_layer(
        tar([entry("install.sh"), tool, data], {"bin/tool": b"#!/bin/sh\n", "share/data": b"x"})
    )
    assert isinstance(files["bin/tool"], ExecutableFile) and not isinstance(
        files["share/data"], ExecutableFile
    )
    config = local_features(tmp_path, {"f": {}}, ["f"])
    (config.parent / "f" / "run").write_text("#!/bin/sh\n")
    (config.parent / "f" / "run").chmod(0o750)
    (feature,) = devcontainer.read(config).features
    with tarfile.open(fileobj=io.BytesIO(devcontainer_build._feature_archive(feature, {}))) as archive:
        modes = {member.name: member.mode for member in archive}
    assert (modes["run"], modes["devcontainer-feature.json"], modes["install.sh"]) == (0o755, 0o644, 0o755)
