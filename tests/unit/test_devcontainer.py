"""devcontainer.json read and turned into qimg's layer: the lookup, variables, features' options, what
becomes a shell script (run by the real /bin/sh here) and the labels read back as untrusted input."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from qimg.builder import devcontainer, devcontainer_build
from qimg.builder.labels import DevcontainerLabels, HostRequirements, read_devcontainer
from qimg.errors import UsageError

IMAGE = {"image": "debian:bookworm-slim"}


def write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def test_the_default_lookup_order(tmp_path: Path) -> None:
    write(tmp_path / ".devcontainer.json", {**IMAGE, "remoteUser": "second"})
    assert devcontainer.read(None, cwd=tmp_path).remote_user == "second"
    write(tmp_path / ".devcontainer" / "devcontainer.json", {**IMAGE, "remoteUser": "first"})
    assert devcontainer.read(None, cwd=tmp_path).remote_user == "first"
    assert devcontainer.read(tmp_path).remote_user == "first"  # a folder: looked into the same way
    assert devcontainer.read(tmp_path / ".devcontainer").remote_user == "first"


def test_the_workspace_is_the_project_folder(tmp_path: Path) -> None:
    nested = write(tmp_path / "proj" / ".devcontainer" / "gpu" / "devcontainer.json", IMAGE)
    assert devcontainer.workspace_of(nested) == tmp_path / "proj"
    read = devcontainer.read(nested)
    assert read.workspace_folder == "/workspaces/proj"


def test_variables_substituted_and_credentials_refused(tmp_path: Path) -> None:
    config = write(
        tmp_path / "p" / ".devcontainer.json",
        {**IMAGE, "containerEnv": {"A": "${localEnv:A_VALUE}", "B": "${localEnv:NOPE:fallback}",
                                   "C": "${localWorkspaceFolder}", "D": "${unknownVariable}"}},
    )  # fmt: skip
    read = devcontainer.read(config, environ={"A_VALUE": "x"})
    assert dict(read.container_env) == {
        "A": "x",
        "B": "fallback",
        "C": str(tmp_path / "p"),
        "D": "${unknownVariable}",
    }
    write(config, {**IMAGE, "containerEnv": {"A": "${localEnv:NPM_TOKEN}"}})
    with pytest.raises(UsageError, match="would write a credential into the image"):
        devcontainer.read(config, environ={"NPM_TOKEN": "secret"})
    write(config, {**IMAGE, "containerEnv": {"A": "line\nbreak"}})
    with pytest.raises(UsageError, match=r"containerEnv\.A: holds a control character"):
        devcontainer.read(config)
    write(config, {**IMAGE, "postStartCommand": "echo ${containerEnv:HOME}"})
    with pytest.raises(UsageError, match="only in remoteEnv"):
        devcontainer.read(config)


def feature_project(tmp_path: Path, given: object) -> Path:
    folder = tmp_path / "p" / ".devcontainer"
    write(folder / "f" / "devcontainer-feature.json", {"id": "f", "options": {
        "version": {"type": "string", "default": "latest"},
        "flavour": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "install-docs": {"type": "boolean", "default": True},
    }})  # fmt: skip
    (folder / "f" / "install.sh").write_text("#!/bin/sh\n")
    return write(folder / "devcontainer.json", {**IMAGE, "features": {"./f": given}})


def test_feature_options_as_the_specification_names_them(tmp_path: Path) -> None:
    (feature,) = devcontainer.read(
        feature_project(tmp_path, {"flavour": "b", "install-docs": False})
    ).features
    assert feature.options == (("VERSION", "latest"), ("FLAVOUR", "b"), ("INSTALL_DOCS", "false"))
    (short,) = devcontainer.read(feature_project(tmp_path / "2", "1.2")).features
    assert dict(short.options)["VERSION"] == "1.2"
    with pytest.raises(UsageError, match=r'features "\./f"\.colour: the feature has no such option'):
        devcontainer.read(feature_project(tmp_path / "3", {"colour": "red"}))
    with pytest.raises(UsageError, match="'c' is not one of"):
        devcontainer.read(feature_project(tmp_path / "4", {"flavour": "c"}))
    outside = write(tmp_path / "5" / ".devcontainer.json", {**IMAGE, "features": {"./../f": {}}})
    with pytest.raises(UsageError, match="a local feature is a folder inside"):
        devcontainer.read(outside)


def test_the_feature_archive_holds_its_options(tmp_path: Path) -> None:
    import io
    import tarfile

    (feature,) = devcontainer.read(feature_project(tmp_path, {"version": "it's 1"})).features
    data = devcontainer_build._feature_archive(feature, {"_REMOTE_USER": "dev"})
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = archive.getnames()
        env_file = archive.extractfile("devcontainer-features.env")
        assert env_file is not None
        sourced = subprocess.run(
            ["sh", "-c", 'set -a; . /dev/stdin; printf "%s|%s|%s" "$_REMOTE_USER" "$VERSION" "$FLAVOUR"'],
            input=env_file.read(), capture_output=True, check=True,
        )  # fmt: skip
    assert sorted(names) == ["devcontainer-feature.json", "devcontainer-features.env", "install.sh"]
    assert sourced.stdout.decode() == "dev|it's 1|a"
    assert devcontainer_build._feature_archive(feature, {}) == devcontainer_build._feature_archive(
        feature, {}
    )


@pytest.mark.parametrize(
    ("value", "session", "expected"),
    [
        ("${containerEnv:PATH}:/opt/bin", {"PATH": "/usr/bin"}, "/usr/bin:/opt/bin"),
        ("${containerEnv:MISSING:de fault $x}", {}, "de fault $x"),
        ("${containerEnv:SET:unused}", {"SET": "v"}, "v"),
        ('it\'s $HOME `id` \\ "q"', {}, 'it\'s $HOME `id` \\ "q"'),
        ("", {}, ""),
    ],
)
def test_remote_env_in_login_shells(value: str, session: dict[str, str], expected: str) -> None:
    script = devcontainer_build._remote_env_script((("X", value), ("GONE", None)))
    shown = subprocess.run(
        ["sh", "-c", '. /dev/stdin; printf "%s|%s" "$X" "${GONE-unset}"'],
        input=script, capture_output=True, check=True,
        env={"PATH": "/usr/bin:/bin", "GONE": "there", **session},
    )  # fmt: skip
    assert shown.stdout.decode() == f"{expected}|unset"


def test_labels_written_and_read_back() -> None:
    labels = DevcontainerLabels(
        (8888, 6006), ((8888, "Jupyter (lab)"),), "/workspaces/p q", ("a.b", "c.d@1.0"), ("postStartCommand",)
    )
    assert read_devcontainer(labels.write(), "img") == labels
    assert read_devcontainer({}, "img") == DevcontainerLabels()
    needs = DevcontainerLabels(host_requirements=HostRequirements(8, 34360, True))
    assert needs.write() == {"io.qimg.host-requirements": "cpus=8,memory-mb=34360,gpu=1"}
    assert read_devcontainer(needs.write(), "img") == needs


def host_requirements(tmp_path: Path, given: object, *ignore: str) -> HostRequirements:
    config = write(tmp_path / ".devcontainer.json", {**IMAGE, "hostRequirements": given})
    return devcontainer.read(config, ignore).host_requirements


def test_host_requirements_as_the_cli_reads_them(tmp_path: Path) -> None:
    """memory in binary units, as the Dev Containers CLI reads it (2**30 for gb), in decimal MB as Qarnot
    counts; a GPU needed when gpu is true or an object, not when "optional"; storage set aside."""
    given = {"cpus": 4, "memory": "32gb", "storage": "64gb", "gpu": "optional"}
    assert host_requirements(tmp_path, given) == HostRequirements(4, 34360, False)
    assert host_requirements(tmp_path, {"memory": "512mb", "gpu": {"cores": 1000}}) == HostRequirements(
        None, 537, True
    )
    assert host_requirements(tmp_path, {"memory": "2000000", "gpu": True}) == HostRequirements(None, 2, True)
    assert host_requirements(tmp_path, {"cpus": 2, "gpu": True}, "hostRequirements.gpu") == HostRequirements(
        2
    )
    read = devcontainer.read(write(tmp_path / ".devcontainer.json", {**IMAGE, "hostRequirements": given}))
    assert "hostRequirements.storage" in read.set_aside


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        ({"cpus": 0}, "hostRequirements.cpus: 0 is not a number of cpus"),
        ({"cpus": True}, "hostRequirements.cpus: True is not a number of cpus"),
        ({"cpus": "4"}, "hostRequirements.cpus: '4' is not a number of cpus"),
        (
            {"memory": "32GB"},
            "hostRequirements.memory: '32GB' is not an amount of memory",
        ),  # the CLI's: lower
        ({"memory": "0gb"}, "hostRequirements.memory: '0gb' is not an amount"),
        ({"memory": "99999tb"}, "hostRequirements.memory: '99999tb' is not an amount"),
        ({"gpu": "yes"}, "hostRequirements.gpu: 'yes' is neither true, false"),
        ({"disk": "1gb"}, "hostRequirements.disk: not a hostRequirements key"),
        ([4], "hostRequirements: expected an object"),
    ],
)
def test_host_requirements_refused(tmp_path: Path, given: object, refusal: str) -> None:
    with pytest.raises(UsageError, match=re.escape(refusal)):
        host_requirements(tmp_path, given)


@pytest.mark.parametrize(
    ("label", "value"),
    [
        ("io.qimg.forward-ports", "8888,0"),
        ("io.qimg.forward-ports", "8888;rm -rf /"),
        ("io.qimg.forward-ports", ",".join(["1"] * 65)),
        ("io.qimg.port-labels", "8888=$(id)"),
        ("io.qimg.port-labels", "99999=x"),
        ("io.qimg.workspace-folder", "relative/path"),
        ("io.qimg.workspace-folder", "/a/../../etc"),
        ("io.qimg.workspace-folder", "/a'b"),
        ("io.qimg.vscode-extensions", "not an id"),
        ("io.qimg.lifecycle", "postStartCommand,preAttachCommand"),
        ("io.qimg.host-requirements", "cpus=0"),
        ("io.qimg.host-requirements", "cpus=4,cpus=8"),
        ("io.qimg.host-requirements", "cpus=99999999"),
        ("io.qimg.host-requirements", "memory-mb=1e9"),
        ("io.qimg.host-requirements", "gpu=0"),
        ("io.qimg.host-requirements", "storage=64"),
    ],
)
def test_labels_no_qimg_build_writes_are_refused(label: str, value: str) -> None:
    with pytest.raises(UsageError, match=f"its label {label}="):
        read_devcontainer({label: value}, "img")


def test_users_from_the_image(tmp_path: Path) -> None:
    """The login user as the specification merges it: the file's remoteUser, the image's metadata, the
    containerUser, the image's USER; an existing user keeps its ids."""
    passwd = "root:x:0:0:root:/root:/bin/bash\nvscode:x:1000:1001::/home/vscode:/bin/zsh\nbad line\n"
    accounts = devcontainer_build._accounts(passwd)
    assert sorted(accounts) == ["root", "vscode"] and accounts["vscode"].gid == 1001
    metadata = json.dumps([{"containerUser": "root"}, {"remoteUser": "vscode"}, {"remoteUser": "a;b"}])
    assert devcontainer_build._metadata_users(metadata) == ("vscode", "root")
    assert devcontainer_build._metadata_users("not json") == (None, None)
    config = devcontainer.read(write(tmp_path / ".devcontainer.json", IMAGE))
    facts = devcontainer_build.ImageFacts(accounts, "1000", None, None)
    spec = devcontainer_build._spec(config, facts, "base")
    assert (spec.user, spec.uid, spec.gid) == ("vscode", 1000, 1001)
    ghost = devcontainer_build.ImageFacts(accounts, "2000", None, None)
    with pytest.raises(UsageError, match="runs as '2000', which its /etc/passwd does not name"):
        devcontainer_build._spec(config, ghost, "base")
    system = devcontainer.read(
        write(tmp_path / "s" / ".devcontainer.json", {**IMAGE, "remoteUser": "daemon"})
    )
    with pytest.raises(UsageError, match="daemon is a system account"):
        devcontainer_build._spec(system, facts, "base")
