"""Text from outside reaches the terminal with its control characters escaped (F9)."""

from __future__ import annotations

import pytest

from qimg.display import shown

CASES = {
    "OSC 52 clipboard write": ("\x1b]52;c;SGk=\x07", "\\x1b]52;c;SGk=\\x07"),
    "hidden text": ("\x1b[8mhidden\x1b[0m", "\\x1b[8mhidden\\x1b[0m"),
    "C1 CSI": ("a\x9b31mb", "a\\x9b31mb"),
    "a second line": ("one\ntwo\r", "one\\ntwo\\r"),
    "right-to-left override": ("abc\u202edef", "abc\\u202edef"),
    "DEL and NUL": ("\x7f\x00", "\\x7f\\x00"),
    "plain text, tab and accents": ("café\tok ☃", "café\tok ☃"),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_shown(text: str, expected: str) -> None:
    assert shown(text) == expected
