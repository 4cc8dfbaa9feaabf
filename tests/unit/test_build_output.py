"""The classic builder's stream read into plain lines, on chunks as the engine sends them."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from qimg.builder.build import BuildLog, clean_line
from qimg.errors import BuildFailed

# Anything a terminal would not print as text; tab is allowed.
UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
LONG_RUN = (
    "RUN apt-get update     && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
    "openssh-server no-such-package-qimg     && apt-get clean     && rm -rf /var/lib/apt/lists/*"
)
REASON = (
    "The command '/bin/sh -c apt-get update     && DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends openssh-server no-such-package-qimg     && apt-get clean' "
    "returned a non-zero code: 100"
)
# Recorded from Docker 20.10 (classic builder), with a curl-like progress line added: lines cut
# across chunks, stderr wrapped in colour codes, the reset code after the newline.
CHUNKS = [
    "Step 1/9 : FROM debian:bookworm-slim", "\n", " ---> e42e46c1c279\n",
    f"Step 2/9 : {LONG_RUN}", "\n", " ---> Running in 74ed3f1cbed4\n",
    "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]\n",
    "Fetched 18.3 MB in 1s (19.7 MB/s)\nReading package lists...", "\n",
    "\x1b[91m  0  151k\r 40  151k\r100  151k\tdone\n\x1b[0m",
    "\x1b]0;apt title\x07\x1b[1;32mGreen\x1b[K bold\x1b(B\r\n",
    "\x1b[91mE\x1b[0m", "\x1b[91m: \x1b[0m", "\x1b[91mUnable to locate package no-such-package-qimg\x1b[0m",
    "\x1b[91m\n\x1b[0m", "Removing intermediate container 74ed3f1cbed4\n",
]  # fmt: skip


def read(chunks: list[str]) -> tuple[BuildLog, list[str], list[str]]:
    steps: list[str] = []
    output: list[str] = []
    log = BuildLog(steps.append, output.append)
    for chunk in chunks:
        log.feed(chunk)
    return log, steps, output


def test_clean_line() -> None:
    assert clean_line("\x1b[91mE: Unable to locate package x\x1b[0m") == "E: Unable to locate package x"
    assert clean_line("  0%\r 50%\r100% done\r") == "100% done", "what the terminal shows last"
    assert clean_line("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b[2K\x1b[1Gok") == "link ok"
    assert clean_line("a\tb\x07\x08\x00c\x7f\x9b  ") == "a\tbc"
    assert clean_line("\x1b[0m") == ""


@given(st.text())
def test_clean_line_leaves_nothing_unprintable(text: str) -> None:
    cleaned = clean_line(text)
    assert "\x1b" not in cleaned and not UNPRINTABLE.search(cleaned)


def test_the_failing_step_and_its_own_plain_lines() -> None:
    log, steps, output = read(CHUNKS)
    failure = log.failure(REASON, None)
    assert steps == [
        "Step 1/9 : FROM debian:bookworm-slim",
        "Step 2/9 : " + " ".join(LONG_RUN.split()),
    ]
    assert output == [
        "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
        "Fetched 18.3 MB in 1s (19.7 MB/s)",
        "Reading package lists...",
        "100  151k\tdone",
        "Green bold",
        "E: Unable to locate package no-such-package-qimg",
    ]
    assert failure.tail == tuple(output), "the step's own lines: no builder bookkeeping"
    summary = "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get ins..."
    assert str(failure) == f"build failed at step 2/9 ({summary}): exit code 100"
    assert failure.step == f"step 2/9 ({summary})"
    assert (failure.number, failure.total, failure.instruction) == (2, 9, "RUN")
    assert failure.summary == summary and len(summary) == len("RUN ") + 60 + len("...")
    assert failure.command_exit_code == 100
    assert isinstance(failure, BuildFailed) and failure.exit_code == 1, "qimg's own exit code is untouched"


# Recorded from Podman 4.3 (Buildah): its own step and bookkeeping lines, and its wording of the failure.
PODMAN_CHUNKS = [
    "STEP 1/10: FROM debian:bookworm-slim\n", "STEP 2/10: RUN echo hi\n", "hi\n", "--> 244ffe14989\n",
    f"STEP 3/10: {LONG_RUN}\n", "Reading package lists...\n",
    "E: Unable to locate package no-such-package-qimg\n", "COMMIT docker.io/qimgtest/x:1\n",
    "1f594880487dc10e533509719c80386448818cbf41a6977499cdb8595b224f41\n",
]  # fmt: skip
PODMAN_REASON = f'building at STEP "{LONG_RUN}": while running runtime: exit status 100\n'


def test_podmans_steps_bookkeeping_and_failure() -> None:
    log, steps, output = read(PODMAN_CHUNKS)
    failure = log.failure(PODMAN_REASON, None)
    assert steps == [
        "STEP 1/10: FROM debian:bookworm-slim",
        "STEP 2/10: RUN echo hi",
        "STEP 3/10: " + " ".join(LONG_RUN.split()),
    ]
    assert output == ["hi", "Reading package lists...", "E: Unable to locate package no-such-package-qimg"]
    summary = "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get ins..."
    assert str(failure) == f"build failed at step 3/10 ({summary}): exit code 100"
    assert failure.tail == tuple(output[1:]) and failure.command_exit_code == 100


def test_exit_code_from_error_detail() -> None:
    log, _, _ = read(CHUNKS)
    failure = log.failure("step failed", 42)
    assert failure.command_exit_code == 42 and str(failure).endswith(": exit code 42")


def test_a_failure_without_exit_code_keeps_the_reason_on_one_line() -> None:
    log, _, _ = read(["Step 1/3 : FROM debian:bookworm-slim\n", "Step 2/3 : COPY qimg-setup.sh /x\n"])
    failure = log.failure("COPY failed:\n\x1b[91mfile not found\x1b[0m\tin build context\n" + "x" * 300, None)
    message = str(failure)
    assert message.startswith("build failed at step 2/3 (COPY qimg-setup.sh /x): COPY failed: file not found")
    assert message.endswith("...") and "\n" not in message and not UNPRINTABLE.search(message)
    assert failure.command_exit_code is None and failure.tail == ()


def test_a_failure_before_the_first_step() -> None:
    log, steps, _ = read([])
    failure = log.failure("dockerfile parse error line 3: unknown instruction: RUNN", None)
    assert str(failure) == (
        "build failed before its first step: dockerfile parse error line 3: unknown instruction: RUNN"
    )
    assert (failure.step, failure.number, failure.total, failure.instruction) == ("", 0, 0, "")
    assert steps == []


def test_a_command_printing_step_lines_does_not_move_the_step() -> None:
    log, steps, output = read(["Step 1/2 : RUN ./make-all\n", "Step 1/3 : compile\n", "Step 3/3 : link\n"])
    assert steps == ["Step 1/2 : RUN ./make-all"]
    assert output == ["Step 1/3 : compile", "Step 3/3 : link"]
    assert log.failure("", 2).step == "step 1/2 (RUN ./make-all)"


def test_the_tail_is_the_last_fifteen_lines_of_the_step() -> None:
    log, _, _ = read(["Step 1/1 : RUN seq 40\n", *(f"{n}\n" for n in range(1, 41)), "41"])
    assert log.failure("", 1).tail == tuple(str(n) for n in range(27, 42)), "the unfinished line too"


@given(st.lists(st.text()), st.text())
def test_nothing_unprintable_reaches_the_callbacks_or_the_error(chunks: list[str], reason: str) -> None:
    log, steps, output = read(chunks)
    failure = log.failure(reason, None)
    for text in (*steps, *output, *failure.tail, failure.step, str(failure)):
        assert "\x1b" not in text and not UNPRINTABLE.search(text), text
    assert "\t" not in str(failure) and "\t" not in failure.step
