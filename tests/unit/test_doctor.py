"""What a doctor probe prints is the task's: read strictly, between its markers, or refused."""

from __future__ import annotations

import pytest

from qimg.launcher.contract import check_constants
from qimg.launcher.doctor import BEGIN, END, ProbeOutput, parse_output, probe_command

GOOD = [
    BEGIN,
    "qimg-doctor-uid 0",
    "qimg-doctor-workdir 1000 1777 alice",
    "qimg-doctor-secret QIMG_DOCTOR_PROBE",
    "qimg-doctor-secret QARNOT_SECRET__QIMG_DOCTOR_PROBE",
    END,
]


def output(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_a_block_is_read_with_its_values() -> None:
    assert parse_output("platform chatter\n" + output(*GOOD)) == ProbeOutput(
        0, (1000, "1777", "alice"), ("QARNOT_SECRET__QIMG_DOCTOR_PROBE", "QIMG_DOCTOR_PROBE")
    )


def test_a_missing_workdir_no_secret_and_carriage_returns() -> None:
    printed = "\r\n".join([BEGIN, "qimg-doctor-uid 1000", "qimg-doctor-workdir missing", END])
    assert parse_output(printed) == ProbeOutput(1000, None, ())


def test_nothing_until_the_end_marker_and_the_last_block_counts() -> None:
    assert parse_output(output(*GOOD[:-1])) is None
    assert parse_output("") is None
    restarted = output(*GOOD) + output(BEGIN, "qimg-doctor-uid 5", "qimg-doctor-workdir missing", END)
    assert parse_output(restarted) == ProbeOutput(5, None, ())


@pytest.mark.parametrize(
    "line",
    [
        "qimg-doctor-uid 0",  # a second uid
        "qimg-doctor-workdir 0 755 root",  # a second workdir
        "qimg-doctor-secret QIMG_DOCTOR_PROBE",  # a name twice
        "qimg-doctor-secret BAD NAME",
        "qimg-doctor-secret \x1b]0;owned\x07",
        "qimg-doctor-workdir 0 999 root",
        "qimg-doctor-workdir 0 755 ro ot",
        "qimg-doctor-uid -1",
        "qimg-doctor-uid 12345678901",
        "something else",
    ],
)
def test_anything_else_in_the_block_is_refused(line: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_output(output(*GOOD[:-1], line, END))
    assert "\x1b" not in str(refused.value) and "\x07" not in str(refused.value)


def test_too_many_names_are_refused() -> None:
    names = [f"qimg-doctor-secret N{index}" for index in range(17)]
    with pytest.raises(ValueError):
        parse_output(output(*GOOD[:-1], *names, END))


def test_the_probe_command_is_a_constant_qarnot_takes_unchanged() -> None:
    command = probe_command("0123456789abcdef0123456789abcdef")
    check_constants({"DOCKER_CMD": command})  # no ${ to substitute, within the length limit
    assert command.startswith("sh -c '")
