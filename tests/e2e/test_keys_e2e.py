"""Keys from qimg keygen and from PuTTYgen log into a qimg image; bad keys never leave the machine."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.badkeys import corpus
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD
from tests.helpers import assert_one_line_error

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("case", list(corpus()))
def test_a_bad_key_sends_nothing(pushed_image: str, fake: FakeQarnot, user: User, case: str) -> None:
    text, fragment = corpus()[case]
    key = user.home / "pasted.pub"
    key.write_text(text)
    (user.home / "pasted").write_text(
        ""
    )  # a private key beside it: the refusal must come from the key itself
    result = user.qimg(
        "run", pushed_image, "--key", str(key), *LOGIN,
        stdin=REGISTRY_PASSWORD + "\n",
    )  # fmt: skip
    assert_one_line_error(result, 2, fragment)
    assert fake.count("POST", "/tasks") == 0


def test_a_key_from_qimg_keygen_logs_in(e2e_image: str, user: User) -> None:
    for name in ("id_ed25519", "id_ed25519.pub"):
        (user.home / ".ssh" / name).unlink()
    assert user.qimg("keygen", "--ppk").returncode == 0
    result = user.qimg("run", "--local", e2e_image, "--command", "cat ~/.ssh/authorized_keys")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (user.home / ".ssh" / "id_ed25519.pub").read_text().strip()


def test_putty_users_log_in_with_plink_and_the_pinned_host_key(e2e_image: str, user: User) -> None:
    """--putty prints a plink command with the .ppk and the host key's fingerprint: plink logs in with it."""
    made = user.qimg("keygen", "--ppk", "--out", str(user.home / ".ssh" / "putty_ed25519"))
    assert made.returncode == 0, made.stderr
    key = user.home / ".ssh" / "putty_ed25519.pub"
    launched = user.qimg("run", "--local", e2e_image, "--key", str(key), "--name", "win", "--putty")
    assert launched.returncode == 0, launched.stderr
    (plink_line,) = [
        line.strip() for line in launched.stdout.splitlines() if line.strip().startswith("plink ")
    ]
    assert "-hostkey SHA256:" in plink_line and "putty_ed25519.ppk" in plink_line
    plink = shlex.split(plink_line.replace("~", str(user.home)))
    login = subprocess.run(
        [plink[0], "-batch", *plink[1:], "id", "-un"], capture_output=True, text=True, timeout=60, check=False
    )
    assert login.stdout.strip() == "alice", login.stderr
    # a wrong pin makes plink refuse: the fingerprint is really checked
    wrong = [part if not part.startswith("SHA256:") else "SHA256:" + "A" * 43 for part in plink]
    refused = subprocess.run(
        [wrong[0], "-batch", *wrong[1:], "true"], capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode != 0
    again = user.qimg("ssh", "win", "--putty")
    assert again.stdout.strip() == plink_line
    assert user.qimg("stop", "win", "--local").returncode == 0


def test_puttygen_keys_log_in_as_ppk_and_as_rfc4716(e2e_image: str, user: User, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    ppk = tmp_path / "made-by-puttygen.ppk"
    no_passphrase = str(tmp_path / "empty")
    subprocess.run(
        ["puttygen", "-t", "ed25519", "-C", "puttygen", "-o", str(ppk), "--new-passphrase", no_passphrase],
        check=True, capture_output=True,
    )  # fmt: skip
    assert user.qimg("keygen", "--from", str(ppk)).returncode == 0  # the OpenSSH private key ssh logs in with
    as_ppk = user.qimg("run", "--local", e2e_image, "--key", str(ppk), "--command", "whoami")
    assert as_ppk.returncode == 0 and as_ppk.stdout.strip() == "alice", as_ppk.stderr
    rfc = tmp_path / "made-by-puttygen.pub"
    openssh_line = rfc.read_text()  # written by keygen --from, replaced by the RFC 4716 export below
    subprocess.run(["puttygen", str(ppk), "-O", "public", "-o", str(rfc)], check=True, capture_output=True)
    assert rfc.read_text().startswith("---- BEGIN SSH2 PUBLIC KEY ----")
    as_rfc = user.qimg(
        "run", "--local", e2e_image, "--key", str(rfc), "--command", "cat ~/.ssh/authorized_keys"
    )
    assert as_rfc.returncode == 0, as_rfc.stderr
    assert as_rfc.stdout.split()[:2] == openssh_line.split()[:2]
