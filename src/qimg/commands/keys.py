"""`keygen`: ssh key pairs, and PuTTY keys converted."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from qimg.commands.common import KEYS, JsonOpt, app, stdin_line, typed_path
from qimg.display import keys as display
from qimg.errors import UsageError


class KeyType(str, Enum):
    ED25519 = "ed25519"
    RSA = "rsa"


@app.command(rich_help_panel=KEYS)
def keygen(
    key_type: Annotated[KeyType, typer.Option("--type", help="Key type.")] = KeyType.ED25519,
    bits: Annotated[
        int | None, typer.Option("--bits", help="RSA size (3072 to 16384; default 3072).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Private key path (default ~/.ssh/id_TYPE); .pub and .ppk beside it.",
            parser=typed_path,
        ),
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="Key comment (default user@host).")] = None,
    passphrase_stdin: Annotated[
        bool, typer.Option("--passphrase-stdin", help="Read the passphrase from standard input.")
    ] = False,
    ppk: Annotated[bool, typer.Option("--ppk", help="Also write a PuTTY key (format 3).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
    from_ppk: Annotated[
        Path | None,
        typer.Option("--from", help="Convert this PuTTY .ppk to OpenSSH files instead.", parser=typed_path),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an ssh key pair (OpenSSH files, and a .ppk for PuTTY), or convert a .ppk to OpenSSH files."""
    from qimg.launcher.keys import generate

    def passphrase(prompt: str, required: bool) -> bytes | None:
        if passphrase_stdin:
            text = stdin_line()
        elif sys.stdin.isatty():
            import getpass

            text = getpass.getpass(prompt)
        elif required:
            raise UsageError("the key is encrypted and there is no terminal to ask: pass --passphrase-stdin")
        else:
            text = ""
        return text.encode() or None

    if from_ppk is not None:
        if bits is not None or key_type is not KeyType.ED25519:
            raise UsageError("--from converts an existing key: it goes with neither --type nor --bits")
        written = generate.convert_ppk(
            from_ppk, out, comment, with_ppk=ppk, force=force, passphrase=passphrase
        )
    else:
        written = generate.new_key_pair(
            key_type.value, bits, out, comment, with_ppk=ppk, force=force, passphrase=passphrase
        )
    display.written(written, as_json)
