"""`qimg code` with a real `qimg run --local` task, and what VS Code's Remote-SSH server needs of an
image (VS Code itself cannot run here: its `code` command is played by a script that records its
arguments)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import User
from tests.helpers import assert_one_line_error, run_qimg, stand_in

pytestmark = pytest.mark.docker

PLAIN_IMAGE = "qimgtest/code-alice:latest"  # `qimg build --user alice`, nothing added
HINT = "does not include qimg's entries: run `qimg ssh-config --install`"


def test_code_print_and_open(e2e_image: str, user: User, tmp_path: Path) -> None:
    assert user.qimg("run", "--local", e2e_image, "--name", "vsc").returncode == 0
    try:
        printed = user.qimg("code", "vsc", "--print")
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout == "vscode://vscode-remote/ssh-remote+qimg-vsc/home/alice\n"
        assert HINT in printed.stderr  # VS Code reads ~/.ssh/config, which has no Include yet
        assert user.qimg("ssh-config", "--install").returncode == 0
        folder = user.qimg("code", "vsc", "runs/run 1", "--print")
        assert folder.stdout == "vscode://vscode-remote/ssh-remote+qimg-vsc/home/alice/runs/run%201\n"
        assert folder.stderr == ""

        code = stand_in(tmp_path / "bin", "code", f'printf "%s\\n" "$@" > "{tmp_path}/args"\nexit 3\n')
        opened = run_qimg("code", "vsc", "/data", env={**user.env, **code})
        assert opened.returncode == 3, opened.stderr  # code's own exit code
        assert (tmp_path / "args").read_text().splitlines() == ["--remote", "ssh-remote+qimg-vsc", "/data"]

        no_code = run_qimg("code", "vsc", env={**user.env, "PATH": str(tmp_path / "empty")})
        assert_one_line_error(no_code, 1, "`code` command is not on PATH", "--print")
        assert_one_line_error(user.qimg("code", "vsc", "a\nb", "--print"), 2, "not a folder path")
    finally:
        assert user.qimg("stop", "vsc", "--local").returncode == 0


# Run as the login user, over ssh, as VS Code's server install script is.
REQUIREMENTS = r"""
echo "glibc=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)"
lib=$(/sbin/ldconfig -p | sed -n 's/.*libstdc++\.so\.6 .*=> //p' | head -n1)
echo "glibcxx=$(grep -ao 'GLIBCXX_3\.4\.[0-9]*' "$lib" | sort -uV | tail -n1 | cut -d_ -f2)"
echo "tar=$(tar --version | head -n1)"
echo "bash=$(bash --version | head -n1)"
echo "shell=$(getent passwd "$(id -un)" | cut -d: -f7)"
test -w "$HOME" && echo "home=writable"
"""


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_image_has_what_the_vscode_server_needs(user: User) -> None:
    """VS Code's documented needs of a Linux Remote-SSH host: glibc >= 2.28, libstdc++ >= 3.4.25, tar,
    bash, a writable home for ~/.vscode-server, and TCP forwarding (direct-tcpip channels, as -D, -L
    and -W open them) for its connection to the server it starts."""
    assert user.qimg("build", "--user", "alice", "--tag", PLAIN_IMAGE).returncode == 0
    assert user.qimg("run", "--local", PLAIN_IMAGE, "--name", "needs").returncode == 0
    try:
        found = user.qimg("ssh", "needs", "--", REQUIREMENTS)
        assert found.returncode == 0, found.stderr
        facts = dict(line.split("=", 1) for line in found.stdout.splitlines())
        assert version(facts["glibc"]) >= (2, 28), facts
        assert version(facts["glibcxx"]) >= (3, 4, 25), facts
        assert facts["tar"].startswith("tar (GNU tar)") and facts["bash"].startswith("GNU bash")
        assert facts["shell"] == "/bin/bash" and facts["home"] == "writable"
        config = str(Path(user.env["XDG_STATE_HOME"]) / "qimg" / "ssh" / "config")
        forwarded = subprocess.run(
            ["ssh", "-F", config, "-W", "127.0.0.1:22", "qimg-needs"],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
        )  # fmt: skip
        assert forwarded.stdout.startswith(b"SSH-2.0-"), forwarded.stderr
    finally:
        assert user.qimg("stop", "needs", "--local").returncode == 0
