"""A launch's options checked before anything is created."""

from __future__ import annotations

import pytest

from qimg.errors import UsageError
from qimg.launcher.plan import check_timeout, parse_duration


def test_durations() -> None:
    assert [parse_duration(text, "--max-time") for text in ("90", "90s", "45m", "12h", "2d")] == [
        90, 90, 2700, 43200, 172800,
    ]  # fmt: skip
    for bad in ("0", "1.5h", "forever", "-3"):
        with pytest.raises(UsageError, match="invalid --max-time"):
            parse_duration(bad, "--max-time")


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_timeouts_that_never_or_always_pass_are_refused(seconds: float) -> None:
    with pytest.raises(UsageError, match="invalid --timeout"):
        check_timeout(seconds)
