"""Paths as people type them: relative to a working directory other than the file's, and with `~` that
no shell expanded (`--key=~/k`, a quoted operand). Each is made absolute where it enters qimg, and what
qimg stores (task records, data records) means the same from any directory."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from qimg.launcher.backends.local import NAME_LABEL, TASK_LABEL
from qimg.launcher.data import WORKDIR
from tests.e2e.conftest import User
from tests.fakes.qarnot import FakeQarnot
from tests.fakes.registry import LOGIN, REGISTRY_PASSWORD
from tests.fakes.s3 import S3
from tests.helpers import assert_one_line_error

pytestmark = pytest.mark.docker


def local_tasks(client: docker.DockerClient) -> list[str]:
    return [c.name or "" for c in client.containers.list(all=True, filters={"label": TASK_LABEL})]


def record(user: User, name: str) -> dict[str, object]:
    state = Path(user.env["XDG_STATE_HOME"]) / "qimg" / "tasks" / f"{name}.json"
    loaded: dict[str, object] = json.loads(state.read_text())
    return loaded


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """`a`, where qimg runs, and `b` beside it, where the files are."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return tmp_path / "a", tmp_path / "b"


def test_a_relative_key_launches_and_a_later_ssh_and_cp_work_from_elsewhere(
    docker_client: docker.DockerClient, e2e_image: str, user: User, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """`make demo`'s `--key .demo/id_ed25519.pub`: the record was stored with the relative identity, set
    aside as broken, and ssh said "Could not resolve hostname qimg-NAME"."""
    here, there = dirs
    made = user.qimg("keygen", "--out", "../b/id", "--ppk", "--comment", "rel", cwd=here)
    assert made.returncode == 0, made.stderr
    assert f"wrote {here}/../b/id\n" in made.stdout and (there / "id.ppk").is_file()

    ran = user.qimg("run", "--local", e2e_image, "--key", "../b/id.pub", "--name", "rel", "--keep",
                    "--command", "id -un", cwd=here)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "alice\n" and "warning" not in ran.stderr
    assert record(user, "rel")["identity"] == f"{here}/../b/id"
    assert record(user, "rel")["ppk"] == f"{here}/../b/id.ppk"

    elsewhere = tmp_path  # neither a nor b
    who = user.qimg("ssh", "rel", "--local", "--", "id", "-un", cwd=elsewhere)
    assert who.returncode == 0 and who.stdout == "alice\n", who.stderr
    # cp: a relative local operand, and a `~` no shell expanded
    (there / "up.txt").write_text("up\n")
    assert user.qimg("cp", "--local", "../b/up.txt", "rel:", cwd=here).returncode == 0
    down = user.qimg("cp", "--local", "rel:up.txt", "~/down.txt", cwd=elsewhere)
    assert down.returncode == 0, down.stderr
    assert (user.home / "down.txt").read_text() == "up\n"
    assert not (elsewhere / "~").exists()

    assert user.qimg("stop", "rel", "--local", cwd=elsewhere).returncode == 0
    assert "rel" not in " ".join(local_tasks(docker_client))


@pytest.mark.parametrize(
    "spelling",
    [
        ("--key=~/keys/id.pub",),  # `=`: the shell leaves the ~ alone
        ("--key", "~/keys/id.pub"),  # quoted
        ("--key", "../b/id.ppk"),  # PuTTY's key: the OpenSSH private key beside it logs in
        ("--key", "keys/id.pub"),  # relative below the working directory (here: HOME)
    ],
    ids=["equals-tilde", "quoted-tilde", "relative-ppk", "relative-below"],
)
def test_key_spellings_log_in(
    docker_client: docker.DockerClient, e2e_image: str, user: User, dirs: tuple[Path, Path],
    spelling: tuple[str, ...],
) -> None:  # fmt: skip
    here, there = dirs
    (user.home / "keys").mkdir()
    for folder in (user.home / "keys", there):
        made = user.qimg("keygen", "--out", str(folder / "id"), "--ppk")
        assert made.returncode == 0, made.stderr
    cwd = user.home if spelling[-1].startswith("keys/") else here
    ran = user.qimg("run", "--local", e2e_image, *spelling, "--name", "spelt", "--keep", "--command", "true",
                    cwd=cwd)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    identity = str(record(user, "spelt")["identity"])
    assert identity.startswith("/") and Path(identity).is_file(), identity
    who = user.qimg("ssh", "spelt", "--local", "--", "id", "-un", cwd=there)
    assert who.returncode == 0 and who.stdout == "alice\n", who.stderr
    assert user.qimg("stop", "spelt", "--local").returncode == 0


def test_upload_results_and_fetch_as_typed(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    here, there = dirs
    (there / "inputs").mkdir()
    (there / "inputs" / "f.txt").write_text("input\n")
    (user.home / "more").mkdir()
    (user.home / "more" / "g.txt").write_text("more\n")
    launched = user.qimg(
        "run", pushed_image, *LOGIN, "--timeout", "120",
        "--name", "typed", "--upload", "../b/inputs", "--upload=~/more", "--results", "../b/results",
        stdin=REGISTRY_PASSWORD + "\n", cwd=here,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr
    written = f"cat {WORKDIR}/inputs/f.txt {WORKDIR}/more/g.txt > {WORKDIR}/both.txt"
    assert user.qimg("ssh", "typed", "--", written).returncode == 0
    assert user.qimg("snapshot", "typed").returncode == 0
    elsewhere = tmp_path / "c"
    elsewhere.mkdir()
    fetched = user.qimg("fetch", "typed", "../fetched", cwd=elsewhere)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "fetched" / "both.txt").read_text() == "input\nmore\n"
    # The --results directory was stored absolute: the stop, from another directory, fills ../b/results.
    stopped = user.qimg("stop", "typed", cwd=elsewhere)
    assert stopped.returncode == 0, stopped.stderr
    assert (there / "results" / "both.txt").read_text() == "input\nmore\n"
    assert not (elsewhere / "results").exists()
    assert user.qimg("stop", "--purge", "typed").returncode == 0


def test_results_with_a_tilde_come_down_into_home(
    pushed_image: str, fake: FakeQarnot, storage: S3, user: User, dirs: tuple[Path, Path]
) -> None:
    here, _there = dirs
    ran = user.qimg(
        "run", pushed_image, *LOGIN, "--timeout", "120",
        "--name", "tilde", "--results=~/out", "--command", f"echo done > {WORKDIR}/r.txt",
        stdin=REGISTRY_PASSWORD + "\n", cwd=here,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (user.home / "out" / "r.txt").read_text() == "done\n"
    assert not (here / "~").exists()
    assert user.qimg("stop", "--purge", "tilde").returncode == 0


def test_keygen_from_a_relative_ppk_and_render_to_a_tilde(user: User, dirs: tuple[Path, Path]) -> None:
    here, there = dirs
    assert user.qimg("keygen", "--out", str(there / "k"), "--ppk").returncode == 0
    converted = user.qimg("keygen", "--from", "../b/k.ppk", "--out=~/conv", cwd=here)
    assert converted.returncode == 0, converted.stderr
    assert (user.home / "conv").is_file() and (user.home / "conv.pub").is_file()
    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(user.home / "conv")], capture_output=True, text=True, check=True
    )
    assert public.stdout.split()[:2] == (there / "k.pub").read_text().split()[:2]
    rendered = user.qimg("render", "--user", "bob", "-o", "../b/Dockerfile", cwd=here)
    assert rendered.returncode == 0 and "FROM " in (there / "Dockerfile").read_text()
    assert user.qimg("render", "--user", "bob", "--output=~/D", cwd=here).returncode == 0
    assert (user.home / "D").is_file() and not (here / "~").exists()


# F6: paths that mean something to OpenSSH's config language or its expansions. Each used to be accepted,
# and then every login failed until --timeout while the task ran (and billed).
ODD = ["o'brien", 'say"hi', "k%d", "k%%", "k #c", "back\\slash", "a b"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder under /tmp: pytest's are too deep for the sockets of ssh masters (ControlPath)."""
    base = Path(tempfile.mkdtemp(prefix="q", dir="/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def home_at(user: User, home: Path) -> User:
    """`user` with HOME at `home` (a new key pair in its ~/.ssh) and qimg's state in ~/.local/state."""
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")]
    subprocess.run(keygen, check=True)
    return User(home, {**user.env, "HOME": str(home), "XDG_STATE_HOME": ""})


@pytest.mark.parametrize("odd", ODD)
def test_a_home_with_characters_ssh_reads_works(
    docker_client: docker.DockerClient, e2e_image: str, user: User, short_dir: Path, odd: str
) -> None:
    """The default key, the record, the ssh config (IdentityFile, UserKnownHostsFile, ControlPath) and the
    Include line all live under HOME: the launch, `qimg ssh` (leaving a master), and plain ssh through the
    user's own config all log in."""
    odd_user = home_at(user, short_dir / odd)
    ran = odd_user.qimg("run", "--local", e2e_image, "--name", "odd", "--keep", "--timeout", "60",
                        "--command", "id -un")  # fmt: skip
    assert ran.returncode == 0 and ran.stdout == "alice\n", ran.stderr
    who = odd_user.qimg("ssh", "odd", "--local", "--", "id", "-un")
    assert who.returncode == 0 and who.stdout == "alice\n", who.stderr
    sockets = odd_user.home / ".local" / "state" / "qimg" / "ssh" / "cm"
    assert len(list(sockets.iterdir())) == 1  # the master qimg ssh left, where the ControlPath said
    assert odd_user.qimg("ssh-config", "--install").returncode == 0
    plain = subprocess.run(
        ["ssh", "-F", str(odd_user.home / ".ssh" / "config"), "qimg-odd", "id", "-un"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(odd_user.home)},
    )  # fmt: skip
    assert plain.returncode == 0 and plain.stdout == "alice\n", plain.stderr
    assert odd_user.qimg("stop", "odd", "--local").returncode == 0
    assert list(sockets.iterdir()) == []  # the master closed through the same ControlPath


REFUSED_AT = ["HOME", "XDG_STATE_HOME", "TMPDIR", "--key"]


def odd_launch(user: User, where: str, odd: Path) -> tuple[User, tuple[str, ...]]:
    """`user` whose HOME, state, temporary folder or key is in the folder `odd`, and the run's options."""
    if where == "HOME":
        return home_at(user, odd), ()
    if where == "--key":
        shutil.copy(user.home / ".ssh" / "id_ed25519", odd / "id")
        shutil.copy(user.public_key, odd / "id.pub")
        return user, ("--key", str(odd / "id.pub"))
    return User(user.home, {**user.env, where: str(odd)}), ()


@pytest.mark.parametrize("where", REFUSED_AT)
def test_a_path_ssh_cannot_be_given_is_refused_before_a_local_task(
    docker_client: docker.DockerClient, e2e_image: str, user: User, tmp_path: Path, where: str
) -> None:
    odd = tmp_path / "k${HOME}x"
    odd.mkdir()
    odd_user, options = odd_launch(user, where, odd)
    name = f"refused-{secrets.token_hex(3)}"
    ran = odd_user.qimg(
        "run", "--local", e2e_image, *options, "--name", name, "--timeout", "20", "--command", "true"
    )
    assert_one_line_error(ran, 2, str(odd), "'${'")
    assert docker_client.containers.list(all=True, filters={"label": f"{NAME_LABEL}={name}"}) == []
    state = odd_user.home / ".local" / "state" if where == "HOME" else Path(odd_user.env["XDG_STATE_HOME"])
    assert not (state / "qimg" / "tasks" / f"{name}.json").exists()


@pytest.mark.parametrize("where", REFUSED_AT)
def test_a_path_ssh_cannot_be_given_is_refused_before_a_qarnot_task(
    pushed_image: str, fake: FakeQarnot, user: User, tmp_path: Path, where: str
) -> None:
    odd = tmp_path / "k${HOME}x"
    odd.mkdir()
    odd_user, options = odd_launch(user, where, odd)
    ran = odd_user.qimg("run", pushed_image, *options, *LOGIN,
                        "--timeout", "20", "--command", "true", stdin=REGISTRY_PASSWORD + "\n")  # fmt: skip
    assert_one_line_error(ran, 2, str(odd), "'${'")
    assert fake.tasks == {} and not [request for request in fake.requests if request[0] == "POST"]
