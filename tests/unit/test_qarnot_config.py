"""[12] Where the Qarnot backend's settings come from: the environment first, then a config file; every
failure one line, and a password in the cluster URL never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from qimg.errors import UsageError
from qimg.launcher.backends.qarnot_config import is_private_host, redacted, settings
from tests.helpers import assert_one_line_error, run_qimg


@pytest.fixture
def home(isolate: Path) -> Path:
    return isolate  # its own, with no Qarnot settings (tests/conftest.py)


def write_conf(path: Path, token: str, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[client]\ntoken = {token}\n\n[cluster]\nurl = {url}\n")
    return path


def test_the_environment_wins_over_the_default_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_conf(home / ".qarnot" / "qarnot.conf", "file-token", "https://file.example.com")
    assert settings().token == "file-token" and settings().cluster_url == "https://file.example.com"
    monkeypatch.setenv("QARNOT_CLIENT_TOKEN", "env-token")
    monkeypatch.setenv("QARNOT_CLUSTER_URL", "https://env.example.com")
    found = settings()
    assert (found.token, found.cluster_url, found.source) == (
        "env-token",
        "https://env.example.com",
        "QARNOT_CLIENT_TOKEN",
    )


def test_a_named_file_that_is_missing_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QARNOT_CONFIG_FILE", str(home / "nope.conf"))
    with pytest.raises(UsageError, match=r"cannot read the Qarnot config .*nope\.conf \(No such file"):
        settings()


def test_a_garbled_file_is_one_line(home: Path) -> None:
    (home / ".qarnot").mkdir()
    (home / ".qarnot" / "qarnot.conf").write_text("token = no section\n")
    with pytest.raises(UsageError, match="cannot read the Qarnot config"):
        settings()


def test_no_token_and_bad_urls(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="no Qarnot token"):
        settings()
    monkeypatch.setenv("QARNOT_CLIENT_TOKEN", "t")
    monkeypatch.setenv("QARNOT_CLUSTER_URL", "ftp://user:hunter2@example.com")
    with pytest.raises(UsageError, match="is not an http") as refused:
        settings()
    assert "hunter2" not in str(refused.value)


def test_passwords_in_urls_are_never_shown() -> None:
    assert redacted("https://me:hunter2@api.example.com/v1") == "https://***@api.example.com/v1"
    assert redacted("https://api.example.com") == "https://api.example.com"


def test_private_hosts() -> None:
    for host in ("localhost", "127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.1.1", "[::1]", "fe80::1"):
        assert is_private_host(host), host
    for host in ("api.qarnot.com", "8.8.8.8", "registry.example.com"):
        assert not is_private_host(host), host


def test_the_url_used_is_the_one_named_and_redacted(tmp_path: Path) -> None:
    write_conf(tmp_path / ".qarnot" / "qarnot.conf", "file-token", "http://127.0.0.1:1")
    env = {
        "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "QARNOT_CONFIG_FILE": "",
        "QARNOT_CLIENT_TOKEN": "env-token", "QARNOT_CLUSTER_URL": "http://me:hunter2@127.0.0.1:9",
    }  # fmt: skip
    result = run_qimg("ls", env=env)
    assert_one_line_error(result, 1, "cannot reach Qarnot at http://***@127.0.0.1:9")
    assert "hunter2" not in result.stderr and "127.0.0.1:1" not in result.stderr


@pytest.mark.parametrize("value", ["0", "2.5", "abc", "600", "31", "-1", ""])
def test_a_cluster_timeout_that_would_stretch_or_break_the_bound_is_refused_in_one_line(
    home: Path, value: str
) -> None:
    """[15.7] The SDK applies QARNOT_CLUSTER_TIMEOUT over the timeout qimg passes, and int()s it: `600`
    would stretch qimg's 30 s bound on every request, `0`/`2.5`/`abc` fail like an unreachable host. It
    is named as the problem, before any request (port 9: nothing listens)."""
    env = {"HOME": str(home), "QARNOT_CLIENT_TOKEN": "t", "QARNOT_CLUSTER_URL": "http://127.0.0.1:9"}
    result = run_qimg("ls", env={**env, "QARNOT_CLUSTER_TIMEOUT": value})
    assert_one_line_error(result, 2, "QARNOT_CLUSTER_TIMEOUT=", "whole number of seconds from 1 to 30")
    assert "cannot reach" not in result.stderr


def test_a_cluster_timeout_may_shorten_the_bound(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QARNOT_CLIENT_TOKEN", "t")
    monkeypatch.delenv("QARNOT_CLUSTER_TIMEOUT", raising=False)
    assert settings().request_timeout == 30
    monkeypatch.setenv("QARNOT_CLUSTER_TIMEOUT", " 5 ")
    assert settings().request_timeout == 5
