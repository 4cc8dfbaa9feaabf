"""`qimg check`: the local sshd smoke test of an image.

The image starts with exactly the command a Qarnot task gets (its start label) and a throwaway
key, in a harder place than most hosts (/run a fresh tmpfs, no CAP_AUDIT_WRITE), and every claim
is proven with the real OpenSSH client against the host key the container printed.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qimg import state
from qimg.builder import labels
from qimg.builder.spec import check_image_ref
from qimg.engine_api import Engine, labels_of
from qimg.errors import NotReady, UsageError
from qimg.launcher import containers
from qimg.launcher.keys.generate import throwaway_key
from qimg.launcher.options import check_timeout
from qimg.launcher.ssh import Endpoint, free_local_port, pinned_argv, read_banner, wait_until_ready

# What `sshd -T` must say, whatever the base image's own sshd_config says.
_EFFECTIVE = {
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "permitemptypasswords": "no",
    "pubkeyauthentication": "yes",
    "allowtcpforwarding": "local",
    "x11forwarding": "no",
    # Idle sessions kept alive through gateways, dead ones dropped (the client side: qimg's ssh config).
    "clientaliveinterval": "30",
    "clientalivecountmax": "4",
}
_FACTS = (
    'id -un; id -u; id -g; echo "$HOME"; stat -c "%U %a" "$HOME" "$HOME/.ssh" "$HOME/.ssh/authorized_keys"'
)


@dataclass(frozen=True)
class ImageInfo:
    """How to start and log into a qimg image, from its labels."""

    ref: str
    user: str
    uid: int
    gid: int
    start: str
    root_login: bool


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_info(engine: Engine, ref: str) -> ImageInfo:
    image = labels.read(labels_of(engine.local_image(ref)), ref)
    if image is None:
        raise UsageError(
            f"{ref} was not built by qimg (no {labels.PREFIX}user label): build it with `qimg build`"
        )
    return ImageInfo(ref, image.user, image.uid, image.gid, image.start, image.root_login)


def check(image: str | None, timeout: float) -> tuple[str, list[CheckResult]]:
    """`qimg check`: the image (default: the last built), and every check's result."""
    ref = check_image_ref(
        state.image_argument(image, state.LAST_BUILT, "qimg check IMAGE, or qimg build first"), "IMAGE"
    )
    check_timeout(timeout)
    engine = Engine.from_env()
    engine.target.require_ports_here("qimg check")
    return ref, check_image(engine, image_info(engine, ref), timeout)


def check_image(engine: Engine, info: ImageInfo, timeout: float = 60.0) -> list[CheckResult]:
    """Run every check against a fresh container of the image; the container is always removed."""
    with tempfile.TemporaryDirectory(prefix="qimg-check-") as tmp:
        workdir = Path(tmp)
        key = throwaway_key(workdir, "qimg-check")
        container = containers.start(
            engine, info.ref, info.start, {"DOCKER_SSH": key.docker_ssh},
            purpose="check", run_tmpfs=True, cap_drop=("AUDIT_WRITE",),
        )  # fmt: skip
        try:
            return list(_checks(engine, info, container, key.identity, workdir, timeout))
        finally:
            containers.remove(engine, container.id)


def _checks(
    engine: Engine,
    info: ImageInfo,
    container: containers.Container,
    identity: Path,
    workdir: Path,
    timeout: float,
) -> Iterator[CheckResult]:
    endpoint = container.endpoint
    known_hosts = workdir / "known_hosts"
    started = time.monotonic()
    try:
        keys = wait_until_ready(
            endpoint, info.user, identity, known_hosts, lambda: containers.host_keys(engine, container.id),
            started + timeout,
        )  # fmt: skip
    except NotReady as error:
        tail = " | ".join(engine.logs(container.id, stderr=True).strip().splitlines()[-3:])
        yield CheckResult(f"login as {info.user}", False, f"{error}; container said: {tail or 'nothing'}")
        return
    waited = time.monotonic() - started
    yield CheckResult(
        f"login as {info.user}, host key pinned", True,
        f"{keys[0].split()[0]} key printed by the container, accepted by ssh in {waited:.2f} s",
    )  # fmt: skip

    def ssh(user: str, *command: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        argv = pinned_argv(endpoint, user, identity, known_hosts, *command, options=options)
        return subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30, check=False
        )

    facts = ssh(info.user, _FACTS).stdout.split("\n")
    yield from _account_checks(info, facts)
    yield _password_refused(ssh(info.user, "true", options=_PASSWORD_ONLY))
    if info.user != "root" and not info.root_login:
        yield _root_refused(engine, container.id, info.user, ssh)
    yield _tunnel(endpoint, info.user, identity, known_hosts)
    yield _effective_config(engine, container.id, info)


def _account_checks(info: ImageInfo, facts: list[str]) -> Iterator[CheckResult]:
    if len(facts) < 7:
        yield CheckResult("account facts", False, f"could not read them over ssh: {facts!r}")
        return
    name, uid, gid, home, home_stat, ssh_stat, keys_stat = facts[:7]
    expected = f"{info.user} uid={info.uid} gid={info.gid}"
    yield CheckResult(
        "user and ids", f"{name} uid={uid} gid={gid}" == expected, f"{name} uid={uid} gid={gid}"
    )
    owner, mode = [*home_stat.split(), "", ""][:2]
    yield CheckResult(
        f"home {home}", owner == info.user and int(mode or "0", 8) & 0o022 == 0,
        f"owner {owner}, mode {mode} (must be {info.user}'s, not writable by others)",
    )  # fmt: skip
    for label, stat, want in ((".ssh", ssh_stat, "700"), (".ssh/authorized_keys", keys_stat, "600")):
        yield CheckResult(f"~/{label}", stat == f"{info.user} {want}", f"{stat} (want {info.user} {want})")


_PASSWORD_ONLY = (
    "-o", "PubkeyAuthentication=no", "-o", "PasswordAuthentication=yes",
    "-o", "KbdInteractiveAuthentication=yes", "-o", "NumberOfPasswordPrompts=0",
)  # fmt: skip


def _password_refused(result: subprocess.CompletedProcess[str]) -> CheckResult:
    # sshd answers a failed attempt with the methods it would accept: "Permission denied (publickey)."
    offered = result.stderr.rpartition("Permission denied (")[2].partition(")")[0]
    return CheckResult(
        "password login refused", result.returncode != 0 and offered == "publickey",
        f"server accepts only: {offered or 'unknown'}",
    )  # fmt: skip


def _root_refused(
    engine: Engine,
    container_id: str,
    user: str,
    ssh: Callable[[str, str], subprocess.CompletedProcess[str]],
) -> CheckResult:
    # Give root the same key first: the refusal must come from sshd's policy, not from a missing key.
    engine.exec_run(
        container_id,
        ["sh", "-c", f"mkdir -p /root/.ssh && cp ~{user}/.ssh/authorized_keys /root/.ssh/"],
        user="root",
    )
    result = ssh("root", "true")
    return CheckResult(
        "root login refused", result.returncode != 0 and "Permission denied" in result.stderr,
        "refused with a valid key" if result.returncode else "root logged in",
    )  # fmt: skip


def _tunnel(endpoint: Endpoint, user: str, identity: Path, known_hosts: Path) -> CheckResult:
    """`ssh -L` to the container's own sshd: the banner must come back through the tunnel."""
    port = free_local_port()
    options = ("-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{port}:127.0.0.1:22")
    tunnel = subprocess.Popen(
        pinned_argv(endpoint, user, identity, known_hosts, options=options),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        banner = ""
        while time.monotonic() < deadline and tunnel.poll() is None and not banner.startswith("SSH-"):
            banner = read_banner(Endpoint("127.0.0.1", port), timeout=1)
            time.sleep(0.05)
    finally:
        tunnel.terminate()
        _, stderr = tunnel.communicate(timeout=10)
    ok = banner.startswith("SSH-")
    return CheckResult(
        "-L tunnel", ok, f"127.0.0.1:{port} -> container:22 answered {banner!r}" if ok else stderr.strip()
    )


def _effective_config(engine: Engine, container_id: str, info: ImageInfo) -> CheckResult:
    code, out = engine.exec_run(container_id, ["/usr/sbin/sshd", "-T"], user="root")
    effective = dict([*line.split(" ", 1), ""][:2] for line in out.lower().splitlines())
    want = {**_EFFECTIVE, "permitrootlogin": "without-password" if info.root_login else "no"}
    wrong = [f"{key} {effective.get(key, '?')}" for key, value in want.items() if effective.get(key) != value]
    return CheckResult(
        "effective sshd settings (sshd -T)", code == 0 and not wrong,
        "as configured" if code == 0 and not wrong else f"differs: {', '.join(wrong) or out.strip()[:200]}",
    )  # fmt: skip
