"""The one key reader and `qimg keygen`, checked against the real tools in both directions:
ssh-keygen (-y, -l, -e) and PuTTY's puttygen from Debian's putty-tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from qimg.errors import UsageError
from qimg.launcher.keys.read import public_keys, read_login_key
from tests.badkeys import corpus
from tests.helpers import assert_one_line_error, run_qimg

PASSPHRASE = "correct horse battery"


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True).stdout


def puttygen_export(ppk: Path, passphrase_file: Path | None, output_type: str) -> str:
    """`puttygen KEY -O TYPE` (it writes files only: `-o -` names a file called "-")."""
    out = ppk.with_name(ppk.name + "." + output_type)
    old = ["--old-passphrase", str(passphrase_file)] if passphrase_file else []
    sh("puttygen", str(ppk), *old, "-O", output_type, "-o", str(out))
    return out.read_text()


def two_fields(line: str) -> str:
    return " ".join(line.split()[:2])


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    (tmp_path / ".ssh").mkdir()
    return {"HOME": str(tmp_path)}


def test_keygen_ed25519_default_modes_and_never_overwrites(home: dict[str, str]) -> None:
    made = run_qimg("keygen", "--comment", "alice@laptop", env=home)
    assert made.returncode == 0, made.stderr
    private = Path(home["HOME"]) / ".ssh" / "id_ed25519"
    public = private.with_name("id_ed25519.pub")
    assert private.stat().st_mode & 0o777 == 0o600 and public.stat().st_mode & 0o777 == 0o644
    assert two_fields(sh("ssh-keygen", "-y", "-f", str(private))) == two_fields(public.read_text())
    assert public.read_text().strip().endswith(" alice@laptop")
    fingerprint = sh("ssh-keygen", "-l", "-f", str(public)).split()[1]
    assert made.stdout.strip().splitlines()[-1].startswith(fingerprint)
    before = private.read_bytes()
    again = run_qimg("keygen", env=home)
    assert_one_line_error(again, 2, "already exist", "--force")
    assert private.read_bytes() == before
    assert run_qimg("keygen", "--force", env=home).returncode == 0
    assert private.read_bytes() != before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--type", "rsa", "--bits", "2048"], "invalid --bits 2048"),
        (["--bits", "4096"], "--type rsa only"),
        (["--type", "dsa"], "--type"),
        (["--out", "/nonexistent/dir/key"], "does not exist"),
    ],
)
def test_keygen_refusals(home: dict[str, str], args: list[str], fragment: str) -> None:
    assert_one_line_error(run_qimg("keygen", *args, env=home), 2, fragment)
    assert list((Path(home["HOME"]) / ".ssh").iterdir()) == []


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "passphrase"])
def test_puttygen_reads_qimgs_ppk(tmp_path: Path, key_type: str, encrypted: bool) -> None:
    out = tmp_path / "key"
    args = ["keygen", "--type", key_type, "--out", str(out), "--ppk", "--comment", "made-by-qimg"]
    made = run_qimg(*args, *(["--passphrase-stdin"] if encrypted else []), stdin=PASSPHRASE + "\n")
    assert made.returncode == 0, made.stderr
    ppk = out.with_name("key.ppk")
    assert ppk.read_text().startswith(f"PuTTY-User-Key-File-3: ssh-{key_type}\n")
    assert ("Key-Derivation: Argon2id" in ppk.read_text()) == encrypted
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n" if encrypted else "")
    from_putty = puttygen_export(ppk, passphrase_file, "public-openssh")
    assert from_putty.strip() == out.with_name("key.pub").read_text().strip()
    # puttygen decrypts the private part (MAC checked) and writes it out for OpenSSH
    exported = ppk.with_name("key.ppk.private-openssh")
    puttygen_export(ppk, passphrase_file, "private-openssh")
    derived = sh("ssh-keygen", "-y", *(["-P", PASSPHRASE] if encrypted else []), "-f", str(exported))
    assert two_fields(derived) == two_fields(from_putty)
    if encrypted:
        passphrase_file.write_text("wrong\n")
        with pytest.raises(subprocess.CalledProcessError):
            puttygen_export(ppk, passphrase_file, "private-openssh")
        # and the OpenSSH private key carries the same passphrase
        assert two_fields(sh("ssh-keygen", "-y", "-P", PASSPHRASE, "-f", str(out))) == two_fields(from_putty)


@pytest.mark.parametrize(
    ("putty_args", "version"),
    [
        (["-t", "ed25519"], "3"),
        (["-t", "rsa", "-b", "3072"], "3"),
        (["-t", "ecdsa", "-b", "256"], "3"),
        (["-t", "ed25519", "--ppk-param", "version=2"], "2"),
    ],
    ids=["ed25519", "rsa", "ecdsa", "ed25519-format2"],
)
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "passphrase"])
def test_qimg_converts_puttygens_ppk(
    tmp_path: Path, putty_args: list[str], version: str, encrypted: bool
) -> None:
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE if encrypted else "")
    ppk = tmp_path / "putty.ppk"
    sh("puttygen", *putty_args, "-C", "putty-made", "-o", str(ppk), "--new-passphrase", str(passphrase_file))
    assert ppk.read_text().startswith(f"PuTTY-User-Key-File-{version}: ")
    expected = puttygen_export(ppk, passphrase_file, "public-openssh")
    # the public part reads without a passphrase
    (public,) = public_keys(ppk.read_text(), "test")
    assert public.line == expected.strip()
    if encrypted:
        wrong = run_qimg("keygen", "--from", str(ppk), "--passphrase-stdin", stdin="not it\n")
        assert_one_line_error(wrong, 2, "wrong passphrase")
        assert not (tmp_path / "putty").exists()
    converted = run_qimg(
        "keygen", "--from", str(ppk), *(["--passphrase-stdin"] if encrypted else []), stdin=PASSPHRASE + "\n"
    )
    assert converted.returncode == 0, converted.stderr
    private = tmp_path / "putty"
    derived = sh("ssh-keygen", "-y", *(["-P", PASSPHRASE] if encrypted else []), "-f", str(private))
    assert two_fields(derived) == two_fields(expected)
    assert (tmp_path / "putty.pub").read_text().strip() == expected.strip()


@pytest.mark.parametrize(
    "keygen_args",
    [
        ["-t", "ed25519"],
        ["-t", "rsa", "-b", "2048"],
        ["-t", "rsa", "-b", "4096"],
        ["-t", "ecdsa", "-b", "256"],
        ["-t", "ecdsa", "-b", "384"],
        ["-t", "ecdsa", "-b", "521"],
    ],
    ids=lambda args: "-".join(args[1::2]),
)
def test_every_format_of_an_openssh_key_reads_the_same(tmp_path: Path, keygen_args: list[str]) -> None:
    key = tmp_path / "key"
    sh("ssh-keygen", "-q", *keygen_args, "-N", PASSPHRASE, "-C", "me@host", "-f", str(key))
    line = key.with_name("key.pub").read_text().strip()
    bits, fingerprint, *_ = sh("ssh-keygen", "-l", "-f", str(key.with_name("key.pub"))).split()
    (from_line,) = public_keys(line, "test")
    assert from_line.line == line
    assert (str(from_line.bits), from_line.fingerprint) == (bits, fingerprint)
    rfc4716 = sh("ssh-keygen", "-e", "-f", str(key.with_name("key.pub")))
    assert public_keys(rfc4716, "test")[0].blob == from_line.blob
    # an encrypted private key still gives its public half, where the caller allows reading one
    (from_private,) = public_keys(key.read_text(), "test", allow_private=True)
    assert from_private.blob == from_line.blob
    assert two_fields(sh("ssh-keygen", "-y", "-P", PASSPHRASE, "-f", str(key))) == two_fields(line)
    with pytest.raises(UsageError, match="is a private key"):
        public_keys(key.read_text(), "--key key")


def test_puttygens_rfc4716_export_reads(tmp_path: Path) -> None:
    ppk = tmp_path / "k.ppk"
    (tmp_path / "empty").write_text("")
    comment = "a comment as long as a header line of an RFC 4716 file may be before it must be folded"
    sh(
        "puttygen",
        "-t",
        "ed25519",
        "-C",
        comment,
        "-o",
        str(ppk),
        "--new-passphrase",
        str(tmp_path / "empty"),
    )
    rfc = puttygen_export(ppk, None, "public")
    expected = puttygen_export(ppk, None, "public-openssh").strip()
    assert rfc.startswith("---- BEGIN SSH2 PUBLIC KEY ----")
    (key,) = public_keys(rfc, "test")
    assert key.line == expected
    # RFC 4716 folds long header lines with a backslash; other tools do it
    folded = rfc.replace(f'Comment: "{comment[:30]}', f'Comment: "{comment[:30]}\\\n')
    assert public_keys(folded, "test")[0].line == expected


@pytest.mark.parametrize("case", list(corpus()))
def test_bad_keys_are_refused_in_one_line(case: str) -> None:
    text, fragment = corpus()[case]
    with pytest.raises(UsageError) as refused:
        public_keys(text, "--key pasted.pub")
    message = str(refused.value)
    assert fragment in message and "\n" not in message and message.startswith("--key pasted.pub")


def test_a_fifo_as_key_is_refused_without_hanging(tmp_path: Path) -> None:
    """[16] Reading a FIFO would block until someone writes to it: only a regular file is read."""
    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="is a FIFO, not a regular file: give your public key file"):
        read_login_key(fifo)


SECRET_LINES = {
    "a dotenv line": "GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "a token after a word": "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "a word and a base64 secret": "password c2VjcmV0LXBhc3N3b3JkLXZhbHVl",
}


@pytest.mark.parametrize("line", SECRET_LINES.values(), ids=SECRET_LINES.keys())
def test_a_file_given_by_mistake_is_never_echoed(tmp_path: Path, line: str) -> None:
    """(F11) `--key .env` printed its first line, a token's prefix, into the terminal and logs."""
    dotenv = tmp_path / "dotenv"
    dotenv.write_text(f"{line}\nOTHER=1\n")
    result = run_qimg(
        "run", "--local", "--key", str(dotenv), "qimgtest/none:latest",
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert_one_line_error(result, 2, f"--key {dotenv} line 1")
    for word in line.split() + line.split("="):
        assert word not in result.stderr and word[:8] not in result.stderr, result.stderr
