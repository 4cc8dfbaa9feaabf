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

from qimg.builder import devcontainer
from qimg.builder.feature_registry import FeatureRef, read_layer, resource_of
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
