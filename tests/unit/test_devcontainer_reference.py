"""qimg reads devcontainer.json as the reference does: the Dev Containers CLI (`@devcontainers/cli`,
installed by scripts/ensure-env.sh) reads each file of tests/devcontainers/ with `devcontainer
read-configuration`, and qimg's reader must find the same image or build, users, environment, ports,
lifecycle commands, workspace folder, features and extensions.

The corpus is shaped like real projects' files (the templates' comments, trailing commas, every
lifecycle form, Dockerfile builds with args and targets, local features, legacy keys, keys qimg refuses),
with their base images swapped for the local debian:bookworm-slim.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qimg.builder import devcontainer
from qimg.builder.devcontainer import Command
from qimg.builder.labels import LIFECYCLE_HOOKS
from qimg.errors import UsageError

CORPUS = Path(__file__).resolve().parents[1] / "devcontainers"


@dataclass(frozen=True)
class Case:
    ignore: tuple[str, ...] = ()  # the keys qimg refuses, set aside with --ignore
    env: dict[str, str] = field(default_factory=dict)  # what ${localEnv:...} reads, for both readers
    config: str | None = None  # a file the default lookup does not find (the CLI's --config)


CASES = {
    "python-app": Case(),
    "node-monorepo": Case(env={"NODE_VERSION": "20.11"}),
    "go-service": Case(),
    "rust-cli": Case(ignore=("capAdd", "runArgs", "securityOpt")),
    "dotfile-ruby": Case(env={"EDITOR": "nano"}),
    "jupyter-lab": Case(ignore=("mounts",)),
    "java-maven": Case(),
    "legacy-dockerfile": Case(ignore=("appPort",)),
    "cpp-cmake": Case(ignore=("init", "initializeCommand", "privileged", "runArgs")),
    "multi-config": Case(config=".devcontainer/gpu/devcontainer.json"),
    "strings-and-comments": Case(),
}


def test_the_corpus_is_every_case() -> None:
    assert sorted(path.name for path in CORPUS.iterdir()) == sorted(CASES)


def reference(folder: Path, case: Case) -> dict[str, Any]:
    """What the Dev Containers CLI reads: its configuration, substituted, and its workspace folder."""
    cli = shutil.which("devcontainer")
    assert cli, "the Dev Containers CLI is missing: make env installs it"
    argv = [
        cli,
        "read-configuration",
        "--workspace-folder",
        str(folder),
        "--mount-workspace-git-root",
        "false",
    ]
    if case.config:
        argv += ["--config", str(folder / case.config)]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **case.env}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def command(value: Any) -> dict[str, Command]:
    """A lifecycle value as the CLI printed it, in qimg's terms: name ("" for one command) -> command."""
    if isinstance(value, dict):
        return {name: one for name, entry in value.items() for one in command(entry).values()}
    return {"": Command(shell=value) if isinstance(value, str) else Command(argv=tuple(value))}


def port(value: int | str) -> int:
    return value if isinstance(value, int) else int(str(value).rpartition(":")[2])


@pytest.mark.parametrize("name", sorted(CASES))
def test_qimg_reads_what_the_dev_containers_cli_reads(name: str, monkeypatch) -> None:
    case, folder = CASES[name], CORPUS / name
    expected = reference(folder, case)
    configuration, workspace = expected["configuration"], expected["workspace"]
    monkeypatch.chdir(folder)
    read = devcontainer.read(Path(case.config) if case.config else None, case.ignore, environ=case.env)
    config_folder = Path(configuration["configFilePath"]["fsPath"]).parent
    assert read.path == config_folder / read.path.name

    assert read.image == configuration.get("image")
    build = configuration.get("build", {})
    dockerfile = build.get("dockerfile", configuration.get("dockerFile"))
    if dockerfile is None:
        assert read.build is None
    else:
        assert read.build is not None
        context = build.get("context", configuration.get("context", "."))
        assert read.build.dockerfile == Path(os.path.normpath(config_folder / dockerfile))
        assert read.build.context == Path(os.path.normpath(config_folder / context))
        assert dict(read.build.args) == build.get("args", {})
        assert read.build.target == build.get("target")

    assert read.remote_user == configuration.get("remoteUser")
    assert read.container_user == configuration.get("containerUser")
    assert dict(read.container_env) == configuration.get("containerEnv", {})
    assert dict(read.remote_env) == configuration.get("remoteEnv", {})
    assert list(read.forward_ports) == [port(entry) for entry in configuration.get("forwardPorts", [])]
    attributes = {
        int(key): value for key, value in configuration.get("portsAttributes", {}).items() if key.isdigit()
    }
    assert {port: (found.label, found.protocol) for port, found in read.ports_attributes} == {
        port: (value.get("label"), value.get("protocol")) for port, value in attributes.items()
    }

    hooks = {hook.name: dict(hook.commands) for hook in read.hooks}
    assert hooks == {key: command(configuration[key]) for key in LIFECYCLE_HOOKS if key in configuration}
    assert read.workspace_folder == workspace["workspaceFolder"]

    features = configuration.get("features", {})
    assert [feature.reference for feature in read.features] == list(features)
    for feature in read.features:
        given = features[feature.reference]
        given = {"version": given} if isinstance(given, str) else given
        options = dict(feature.options)
        for option, value in given.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            assert options[devcontainer.option_variable(option)] == text
    extensions = configuration.get("customizations", {}).get("vscode", {}).get("extensions", [])
    assert list(read.extensions) == extensions


@pytest.mark.parametrize("name", sorted(name for name, case in CASES.items() if case.ignore))
def test_each_key_qimg_cannot_honour_is_refused_by_name(name: str, monkeypatch) -> None:
    """Without --ignore, the first refused key (in the order of its name) is named, with why and how."""
    case = CASES[name]
    monkeypatch.chdir(CORPUS / name)
    for left_out in case.ignore:
        others = tuple(key for key in case.ignore if key != left_out)
        with pytest.raises(UsageError) as refused:
            devcontainer.read(None, others, environ=case.env)
        assert f": {left_out}: qimg cannot honour it: " in refused.value.message
        assert refused.value.hint == f"remove it, or --ignore {left_out}"


def test_host_requirements_in_the_units_the_cli_reads(monkeypatch) -> None:
    """The CLI's merged configuration gives memory in bytes ("32gb" is 32 GiB): qimg's, in Qarnot's
    decimal MB, is the same amount rounded up."""
    case, folder = CASES["jupyter-lab"], CORPUS / "jupyter-lab"
    cli = shutil.which("devcontainer")
    assert cli, "the Dev Containers CLI is missing: make env installs it"
    argv = [cli, "read-configuration", "--workspace-folder", str(folder),
            "--mount-workspace-git-root", "false", "--include-merged-configuration"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = json.loads(done.stdout)["mergedConfiguration"]["hostRequirements"]
    monkeypatch.chdir(folder)
    read = devcontainer.read(None, case.ignore, environ=case.env).host_requirements
    assert read.cpus == expected["cpus"]
    assert read.memory_mb == math.ceil(int(expected["memory"]) / 1e6)
    assert read.gpu is (expected["gpu"] is True)
