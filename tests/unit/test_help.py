"""`qimg --help` lists the commands by group, in the order of the work, without loading rich."""

from __future__ import annotations

from tests.helpers import run_qimg

GROUPS = {
    "Images": ["render", "build", "check", "push"],
    "Tasks": ["run", "jupyter", "ssh", "tunnel", "logs", "stop", "ls", "ssh-config", "cp", "code"],
    "Data": ["snapshot", "fetch"],
    "Account": ["profiles", "hardware", "account", "doctor"],
    "Keys": ["keygen"],
}


def listed_groups(text: str) -> dict[str, list[str]]:
    """Each heading ("Images:") after the options, and the commands under it, in order."""
    groups: dict[str, list[str]] = {}
    heading: str | None = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            heading = line[:-1]
            if heading != "Options":
                groups[heading] = []
        elif line.startswith("  ") and heading in groups:
            groups[heading].append(line.split()[0])
    return groups


def test_commands_are_listed_by_group_in_the_order_of_the_work() -> None:
    result = run_qimg("--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    assert list(listed_groups(result.stdout).items()) == list(GROUPS.items())
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "qimg.cli" in imported
    assert not {name for name in imported if name.split(".")[0] == "rich"}, "help is drawn without rich"


def test_one_column_for_every_group() -> None:
    commands = {name for names in GROUPS.values() for name in names}
    lines = [
        line
        for line in run_qimg("--help").stdout.splitlines()
        if line.split()[:1] and line.split()[0] in commands
    ]
    assert len(lines) == len(commands)
    assert len({line.index(line.split(maxsplit=1)[1]) for line in lines}) == 1, lines


def test_each_command_is_found_in_its_own_module() -> None:
    """`qimg NAME` imports NAME's module alone: the table names the module that registers each command."""
    from qimg import cli
    from qimg.commands.common import app

    cli.register_commands(["--help"])
    registered = {}
    for info in app.registered_commands:
        assert info.callback is not None
        registered[info.name or info.callback.__name__] = info.callback.__module__
    assert {name: f"qimg.commands.{module}" for name, module in cli.COMMANDS.items()} == registered


def test_a_command_imports_no_other_commands_module() -> None:
    result = run_qimg("ls", "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    assert "qimg ls" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert {name for name in imported if name.startswith("qimg.commands.")} == {
        "qimg.commands.common", "qimg.commands.tasks",
    }  # fmt: skip
