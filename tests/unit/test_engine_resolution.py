"""A context's meta.json is untrusted input (another tool, a hand edit, a disk that filled up): every
shape the docker CLI does not write is one usage error naming the file, never a traceback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from qimg.docker_context import resolve
from qimg.errors import UsageError


def meta_file(config: Path, name: str) -> Path:
    """Where `docker context create NAME` stores the context's endpoints."""
    path = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    path.parent.mkdir(parents=True)
    return path


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"Name": "odd"}',
        '{"Name": "odd", "Endpoints": []}',
        '{"Name": "odd", "Endpoints": {"docker": "unix:///x.sock"}}',
        '{"Name": "odd", "Endpoints": {"docker": {"Host": 7}}}',
        '{"Name": "odd", "Endpoints": {"docker": {"Host": ""}}}',
        "x" * (2 << 20),
        "\udcff",
    ],
)
def test_a_broken_meta_json_is_one_line(tmp_path: Path, content: str) -> None:
    meta = meta_file(tmp_path, "odd")
    meta.write_bytes(content.encode(errors="surrogateescape"))
    with pytest.raises(UsageError) as error:
        resolve({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "odd"})
    message = str(error.value)
    assert str(meta) in message and "\n" not in message


def test_a_meta_json_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    meta = meta_file(tmp_path, "odd")
    meta.mkdir()  # a folder where the file should be
    with pytest.raises(UsageError, match="cannot be read"):
        resolve({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "odd"})


def test_a_context_as_the_cli_writes_it(tmp_path: Path) -> None:
    meta_file(tmp_path, "rootless").write_text(
        json.dumps(
            {
                "Name": "rootless",
                "Metadata": {"Description": "Rootless mode"},
                "Endpoints": {
                    "docker": {"Host": "unix:///run/user/1000/docker.sock", "SkipTLSVerify": False}
                },
            }
        )
    )
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}, "currentContext": "rootless"}))
    target = resolve({"DOCKER_CONFIG": str(tmp_path)})
    assert (target.name, target.host) == ("context rootless", "unix:///run/user/1000/docker.sock")
    assert target.described == "context rootless (unix:///run/user/1000/docker.sock)"
