"""`qimg run`'s options are made from their one description (`launcher/options.py`): every field with
a flag is an option, with the field's default and help, and what typer parses becomes the description."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main

from qimg import cli
from qimg.commands import run as run_command
from qimg.commands.common import app
from qimg.launcher.options import FLAG, LaunchOptions, WorkerOptions


def flagged() -> list[tuple[str, Any, Any]]:
    """(name, field default, Flag) of every field the user gives."""
    return [
        (field.name, field.default, field.metadata[FLAG])
        for described in (LaunchOptions, WorkerOptions)
        for field in dataclasses.fields(described)
        if FLAG in field.metadata
    ]


def run_params() -> dict[str, Any]:
    cli.register_commands(["--help"])  # every command registered: `qimg` is a group
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return {param.name or "": param for param in group.commands["run"].params}


def test_every_described_option_is_an_option_of_run_with_its_default_and_help() -> None:
    params = run_params()
    for name, default, flag in flagged():
        param = params[name]
        if flag.spelling:
            assert isinstance(param, typer.core.TyperOption) and param.opts == [flag.spelling]
            assert param.help == flag.help
            assert param.default == (None if default == () else default), name
            assert param.multiple is (default == ())
        else:
            assert isinstance(param, typer.core.TyperArgument)
    # and run's own options (how the backend is chosen, the registry login, the ready lines)
    assert set(params) - {name for name, _, _ in flagged()} == {
        "ssh", "local", "username", "password_stdin", "putty", "as_json",
    }  # fmt: skip


def test_typers_values_become_the_description() -> None:
    given = {"tunnels": ["8888", "9999:99"], "uploads": None, "cores": 4, "env": ["A=1"], "hardware": None}
    options = run_command.described(LaunchOptions, given, backend="local")
    assert options.tunnels == ("8888", "9999:99") and options.uploads == ()
    assert options.worker == WorkerOptions(env=("A=1",), cores=4)
    assert options.backend == "local" and options.profile == "docker-network-ssh"  # the field's default


@pytest.mark.parametrize("option", ["--upload", "--results", "--key"])
def test_path_options_are_made_absolute_as_typed(option: str) -> None:
    param = run_params()[{"--upload": "uploads", "--results": "results", "--key": "key"}[option]]
    converted = param.type.convert("~/data", param, None)
    assert converted == Path.home() / "data"
