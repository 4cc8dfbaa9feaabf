"""What `keygen` shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qimg.display import print_json

if TYPE_CHECKING:
    from qimg.launcher.keys.generate import WrittenKey


def written(key: WrittenKey, as_json: bool) -> None:
    """The files written, then the key's fingerprint and public line."""
    if as_json:
        print_json(key.as_dict())
        return
    for path in (key.private, key.public, key.ppk):
        if path is not None:
            print(f"wrote {path}")
    print(f"{key.fingerprint} {key.public_line}")
