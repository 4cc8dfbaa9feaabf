"""Task records and the ssh files made from them: a broken record is said once and set aside while
the others keep working, state that cannot be written is one FileError, and writers running at once
lose nothing."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from qimg import files, notices
from qimg import state as qimg_state
from qimg.errors import FileError
from qimg.launcher import data, records, sshconfig
from qimg.launcher.records import BrokenRecord, InstanceRecord, TaskRecord
from qimg.launcher.ssh import Endpoint
from tests.helpers import assert_one_line_error, run_qimg


def record(name: str, port: int = 50001) -> TaskRecord:
    key = f"ssh-ed25519 AAAA{name.replace('-', '')}"
    return TaskRecord(
        name, "local", f"id-{name}", "alice", Path("/keys/id_ed25519"), None,
        [InstanceRecord(0, Endpoint("127.0.0.1", port), [key])],
    )  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "qimg"  # the isolated state folder (tests/conftest.py)


BROKEN = {
    "not JSON": b"{garbled",
    "not UTF-8": b'{"name": "\xff"}',
    "a wrong field": json.dumps({**record("junk").as_dict(), "user": "Bad User"}).encode(),
    "another task's name": json.dumps(record("other").as_dict()).encode(),
    "nested too deep": b"[" * 100_000,
}


@pytest.mark.parametrize("content", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_record_is_said_once_and_set_aside(state: Path, content: bytes) -> None:
    sshconfig.save(record("good"))
    (state / "tasks" / "junk.json").write_bytes(content)
    found, problems = records.all_records()
    assert [each.name for each in found] == ["good"]
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith(f"task record {state}/tasks/junk.json is unreadable (")
    assert "moved aside to" in problems[0] and "`qimg stop junk` stops it" in problems[0]
    (aside,) = (state / "tasks" / "broken").iterdir()
    assert aside.read_bytes() == content  # kept for a human, not deleted
    assert records.all_records() == (found, [])  # said once: it is out of the way now
    assert "Host qimg-good\n" in sshconfig.config_path().read_text()


def test_a_folder_in_place_of_a_record(state: Path) -> None:
    (state / "tasks" / "junk.json").mkdir(parents=True)
    with pytest.raises(BrokenRecord, match=r"is unreadable .*Is a directory.*moved aside"):
        records.load("junk")
    assert records.load("junk") is None


def test_a_record_that_cannot_be_set_aside_stays(state: Path) -> None:
    (state / "tasks" / "broken").parent.mkdir(parents=True)
    (state / "tasks" / "broken").write_text("")  # the folder for broken records cannot be made
    (state / "tasks" / "junk.json").write_text("{garbled")
    _found, (problem,) = records.all_records()
    assert "left in place (File exists)" in problem
    assert (state / "tasks" / "junk.json").read_text() == "{garbled"


def test_the_ssh_files_report_broken_records(state: Path) -> None:
    (state / "tasks").mkdir(parents=True)
    (state / "tasks" / "junk.json").write_text("[]")
    warned: list[str] = []
    with notices.to(warned.append):
        sshconfig.save(record("good"))
        (problem,) = warned
        assert "junk.json is unreadable (not a JSON object)" in problem
        sshconfig.forget("good")
    assert warned == [problem]
    assert "Host" not in sshconfig.config_path().read_text()


def test_a_records_folder_that_is_a_file(state: Path) -> None:
    """Every way into the records raises FileError naming what is in the way, never an OSError."""
    state.mkdir()
    (state / "tasks").write_text("")
    blocker = f"{state}/tasks is a file where a folder belongs: move it away"
    for attempt in (
        lambda: records.load("good"),
        lambda: records.store(record("good")),
        lambda: records.claim(record("good")),
        lambda: records.launching("good").__enter__(),
    ):
        with pytest.raises(FileError, match=blocker):
            attempt()
    records.remove("good")  # nothing to remove
    assert records.all_records() == ([], [])


def test_a_record_that_cannot_be_removed(state: Path) -> None:
    sshconfig.save(record("good"))
    (state / "tasks" / "good.json").unlink()
    (state / "tasks" / "good.json").mkdir()
    with pytest.raises(FileError, match=r"cannot remove .*/good.json: Is a directory"):
        records.remove("good")


def test_a_claim_on_a_full_disk_leaves_the_name_free(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, descriptor: int, *args: object, **kwargs: object) -> None:
            self.handle = real_fdopen(descriptor, "w")

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, text: str) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    full = r"No space left on device; the disk \(or your quota\) is full"
    with monkeypatch.context() as patched, pytest.raises(FileError, match=full):
        patched.setattr(os, "fdopen", FullDisk)
        records.claim(record("good"))
    assert records.load("good") is None and records.claim(record("good"))


WRITERS, ROUNDS = 16, 10


def save_one(start: multiprocessing.synchronize.Barrier, index: int) -> None:
    start.wait()  # all at once
    sshconfig.save(record(f"task-{index}", 50000 + index))


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_writers_at_once_lose_nothing(state: Path, round_number: int) -> None:
    """16 qimg processes save their record at the same moment: both files hold all 16."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(WRITERS)
    writers = [context.Process(target=save_one, args=(start, index)) for index in range(WRITERS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert [writer.exitcode for writer in writers] == [0] * WRITERS
    known_hosts = sshconfig.known_hosts_path().read_text().splitlines()
    config = sshconfig.config_path().read_text()
    expected = [f"qimg-task-{index} ssh-ed25519 AAAAtask{index}" for index in range(WRITERS)]
    assert sorted(known_hosts) == sorted(expected)
    assert all(f"Host qimg-task-{index}\n    HostName 127.0.0.1\n    Port {50000 + index}\n" in config
               for index in range(WRITERS))  # fmt: skip
    assert not [path for path in sshconfig.ssh_dir().iterdir() if path.name.endswith(".tmp")]


# The commands, as a user runs them (no engine needed: these fail or warn before one is asked).


def test_ssh_config_says_a_broken_record_once(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    (tmp_path / "state" / "qimg" / "tasks").mkdir(parents=True)
    (tmp_path / "state" / "qimg" / "tasks" / "junk.json").write_text("{garbled")
    first = run_qimg("ssh-config", env=env)
    assert first.returncode == 0 and first.stdout == f"{tmp_path}/state/qimg/ssh/config\n"
    (line,) = first.stderr.splitlines()
    assert line.startswith("qimg: warning: task record ") and "junk.json is unreadable" in line
    again = run_qimg("ssh-config", env=env)
    assert again.returncode == 0 and again.stderr == ""


def test_ssh_to_a_task_whose_record_is_broken(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    (tmp_path / "state" / "qimg" / "tasks").mkdir(parents=True)
    (tmp_path / "state" / "qimg" / "tasks" / "junk.json").write_text('{"name": 1}')
    result = run_qimg("ssh", "junk", "--", "true", env=env)
    assert_one_line_error(result, 1, "junk.json is unreadable (name)", "moved aside", "`qimg stop junk`")


def test_records_that_would_block_or_never_end_are_set_aside(state: Path) -> None:
    """(F8) A FIFO blocked every reader of the records, holding the ssh files' lock; /dev/zero was read
    until memory ran out. Each is set aside at once with one line, and a link to a record still works."""
    sshconfig.save(record("good"))
    tasks = state / "tasks"
    os.mkfifo(tasks / "fifo.json")
    os.mkfifo(state / "elsewhere")
    (tasks / "linked.json").symlink_to(state / "elsewhere")
    (tasks / "zero.json").symlink_to("/dev/zero")
    (state / "kept").write_text(json.dumps(record("vialink").as_dict()))
    (tasks / "vialink.json").symlink_to(state / "kept")
    found, problems = records.all_records()
    assert sorted(each.name for each in found) == ["good", "vialink"]
    assert len(problems) == 3 and all("\n" not in problem for problem in problems)
    fifo, linked, zero = sorted(problems)
    assert f"{tasks}/fifo.json is unreadable (a FIFO, not a regular file), moved aside" in fifo
    assert f"linked.json is unreadable (a symbolic link to {state}/elsewhere, a FIFO, not a regular" in linked
    assert "zero.json is unreadable (a symbolic link to /dev/zero, a character device, not a regular" in zero
    assert sorted(path.name.split(".json")[0] for path in (tasks / "broken").iterdir()) == [
        "fifo", "linked", "zero"
    ]  # fmt: skip
    assert (state / "elsewhere").exists() and records.all_records() == (found, [])


def test_a_record_larger_than_any_qimg_writes(state: Path) -> None:
    (state / "tasks").mkdir(parents=True)
    (state / "tasks" / "huge.json").write_bytes(b" " * (files.READ_LIMIT + 1))
    with pytest.raises(BrokenRecord, match=rf"is unreadable \(larger than {files.READ_LIMIT} bytes\)"):
        records.load("huge")


def test_a_data_record_linked_to_a_device(state: Path) -> None:
    (state / "data").mkdir(parents=True)
    (state / "data" / "x.json").symlink_to("/dev/zero")
    assert data.load("x") is None


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_the_last_image_that_would_block_or_never_end(state: Path, kind: str) -> None:
    state.mkdir(parents=True)
    path = state / "last-image"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    what = "a FIFO" if kind == "fifo" else "a symbolic link to /dev/zero, a character device"
    with pytest.raises(FileError, match=rf"cannot read {path}: {what}, not a regular file"):
        qimg_state.recall(qimg_state.LAST_BUILT)
