"""What a launch keeps of its image's devcontainer labels: the tunnels with their labels, the workspace
folder and extensions, in the task record (checked when read back, as every record field), and what
`qimg code` makes of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qimg.launcher import editor
from qimg.launcher.records import ForwardedPort, InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint


def record() -> TaskRecord:
    return TaskRecord(
        "dev", "local", "id-dev", "dev", Path("/keys/id_ed25519"), None,
        [InstanceRecord(0, Endpoint("127.0.0.1", 50001), ["ssh-ed25519 AAAAdev"])],
        ports=[ForwardedPort(8888, 8888, "Jupyter"), ForwardedPort(18080, 8080)],
        workspace_folder="/workspaces/proj", extensions=["ms-python.python", "ms-toolsai.jupyter@1.2.3"],
        attach_hook=True,
    )  # fmt: skip


def test_the_devcontainer_fields_survive_a_round_trip() -> None:
    written = record()
    assert TaskRecord.from_dict(json.loads(json.dumps(written.as_dict()))) == written


def test_a_record_of_before_has_none() -> None:
    older = record().as_dict()
    for key in ("ports", "workspace_folder", "extensions", "attach_hook"):
        del older[key]
    read = TaskRecord.from_dict(older)
    assert (read.ports, read.workspace_folder, read.extensions, read.attach_hook) == ([], None, [], False)


HOSTILE: dict[str, Any] = {
    "ports": [{"local": 0, "remote": 8888, "label": None}],
    "ports ": [{"local": 8888, "remote": True, "label": None}],
    "ports  ": [{"local": 8888, "remote": 8888, "label": "a\nb"}],
    "ports   ": "8888",
    "workspace_folder": "/workspaces/../etc",
    "workspace_folder ": "relative",
    "workspace_folder  ": "/a\x1b[2Jb",
    "extensions": ["--install-extension"],
    "extensions ": "ms-python.python",
    "attach_hook": "yes",
    "attach_hook ": 1,
}


@pytest.mark.parametrize(
    ("key", "value"), HOSTILE.items(), ids=[f"{k.strip()}={v!r}" for k, v in HOSTILE.items()]
)
def test_a_hostile_devcontainer_field_makes_the_record_broken(key: str, value: Any) -> None:
    data = {**record().as_dict(), key.strip(): value}
    with pytest.raises(ValueError, match=key.strip().rstrip("s") if key.startswith("port") else key.strip()):
        TaskRecord.from_dict(data)


def test_ports_are_shown_as_tunnel_spells_them() -> None:
    assert [port.shown for port in record().ports] == ["8888 (Jupyter)", "18080:8080"]


def test_code_opens_the_workspace_folder_unless_a_path_is_given() -> None:
    assert editor.opened_folder(record(), None) == "/workspaces/proj"
    assert editor.opened_folder(record(), "notes") == "/home/dev/notes"
    bare = TaskRecord("bare", "local", "id-bare", "dev", Path("/keys/id_ed25519"))
    assert editor.opened_folder(bare, None) == "/home/dev"


def test_the_extensions_note_holds_a_settings_snippet() -> None:
    lines = editor.extensions_note(("ms-python.python", "ms-toolsai.jupyter"))
    assert (
        lines[0] == "the image's devcontainer lists VS Code extensions: ms-python.python, ms-toolsai.jupyter"
    )
    assert json.loads("{" + "\n".join(lines[2:]) + "}") == {
        "remote.SSH.defaultExtensions": ["ms-python.python", "ms-toolsai.jupyter"]
    }
    assert editor.extensions_note(()) == []
