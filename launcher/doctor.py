"""`qimg doctor`: what only a real Qarnot account can tell, found with three small tasks.

Qarnot does not document some of what qimg relies on, and the tests' fake takes the harsher reading
of each (../shared/qarnot-api.md, "Audit 3"). These probes settle them on the user's account:
1. a task that prints who owns /job (DOCKER_WORKDIR) and under which names a `QARNOT_SECRET__`
   constant reached its environment, writes a file to /job, and is aborted with a results bucket:
   the states it goes through and whether the results arrive; the time until its launch's tag lists
   it is measured right after it is created;
2. the same task, deleted while Qarnot uploads its results (UploadingResults);
3. a task asking for more RAM than any offer: refused, or left waiting in the queue.

Every task carries its own launch tag (`launch_tag`) from the request that creates it, is created
with signals held, and is deleted on the way out of its probe whatever happened (an error, Ctrl-C);
its bucket is named as qimg names results buckets, so a `kill -9` leaves nothing that `qimg stop
--all --purge` does not find. What a task prints is untrusted: read by strict patterns, between
markers, or not at all.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from qimg import notices
from qimg.builder.spec import ImageRef
from qimg.errors import BackendError, Interrupted, QimgError, TaskNotFound, UsageError, first_line
from qimg.launcher import account, launch, signals
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import (
    ACCOUNT,
    HARDWARE,
    STORAGE,
    Account,
    Backend,
    Hardware,
    HardwareChoice,
    Storage,
    TaskRequest,
    TaskView,
    is_cluster_profile,
)  # fmt: skip
from qimg.launcher.backends.qarnot_config import QarnotSettings
from qimg.launcher.buckets import RESULTS, bucket_name
from qimg.launcher.contract import check_constants
from qimg.launcher.data import WORKDIR
from qimg.launcher.worker import SECRET_PREFIX

DEFAULT_IMAGE = "busybox:latest"
# The plainest profiles first: docker-batch has no network, and no probe needs one.
PROFILES = ("docker-batch", "docker-network", "docker-network-ssh")
SECRET_NAME = "QIMG_DOCTOR_PROBE"  # sent as QARNOT_SECRET__QIMG_DOCTOR_PROBE
RESULT_FILE = "qimg-doctor-result.txt"
PADDING_MB = 16  # written to /job as well, so that the upload of the results lasts long enough to be seen
SELF_STOP_SECONDS = 300  # a probe's command ends by itself after this long, even if nobody deletes it
RAM_EXTRA_MB = 1000  # the RAM probe asks for this much more than the largest offer
RAM_WITHOUT_OFFERS_MB = 4_096_000  # ... or this, when the account lists no RAM offer
RAM_WATCH_SECONDS = 15.0  # how long an accepted RAM probe is watched in the queue
RAM_QUEUE_SECONDS = 60  # its maxTimeQueueSeconds: it gives up by itself if nobody deletes it
RESULTS_WAIT = 600.0  # seconds for the results to be uploaded after an abort
GONE_WAIT = 60.0  # seconds for a deleted task to disappear
LISTING_WAIT = 120.0  # seconds for a new task to appear in its tag's listing
OUTPUT_READS_AFTER_END = 3  # the output lags: an ended task's is read a few times
MIN_LOOK = 0.25  # seconds between two looks at a task, whatever the request budget allows
ENDED = frozenset({"Cancelled", "Success", "Failure"})  # nothing more happens to the task
RUNNING = frozenset({"PartiallyExecuting", "FullyExecuting"})
QUEUED = frozenset({"Submitted"})
DONE, GONE, TIMEOUT = "done", "gone", "timeout"  # how a watch of a task's states ended
# What the table calls each check, in its order.
CHECKS = {
    "workdir": "/job (DOCKER_WORKDIR) when a task starts",
    "secret": "a QARNOT_SECRET__ constant in the container",
    "unoffered_ram": "a RAM value no offer has",
    "abort_with_results": "states after an abort with results",
    "delete_while_uploading": "DELETE during UploadingResults",
    "tag_listing": "a new task in its tag's listing",
}


@runtime_checkable
class DoctorBackend(Backend, Storage, Account, HardwareChoice, Protocol):
    """A backend with every capability (Qarnot's): tasks, buckets, the account and its machines; its
    settings (where it is), and what a task has cost."""

    settings: QarnotSettings

    def credits(self, task_id: str) -> float | None: ...


@dataclass(frozen=True)
class DoctorPlan:
    backend: DoctorBackend
    image: ImageRef
    profile: str
    ram_mb: int  # what the RAM probe asks for: more than any offer
    ram_offers: tuple[float, ...]  # the account's MinimumRam offers, in MB
    balance: float | None  # euros, when Qarnot reports it
    timeout: float  # seconds for a probe's task to print what it found

    def estimate(self) -> list[str]:
        """What the probes create and cost, said before anything is created."""
        balance = "unknown" if self.balance is None else f"{self.balance:.2f} EUR"
        return [
            f"qimg doctor creates 3 tasks on Qarnot at {self.backend.settings.shown_url} (profile "
            f"{self.profile}, image {self.image}, 1 instance each, Flex scheduling):",
            f"  1. prints who owns {WORKDIR} and where a secret constant lands, writes {PADDING_MB} MB to "
            f"{WORKDIR}, is aborted and uploads them to a bucket",
            "  2. the same, deleted while it uploads",
            f"  3. asks for {self.ram_mb} MB of RAM, more than any offer: refused, or deleted after "
            f"{RAM_WATCH_SECONDS:.0f} s in the queue (it never runs)",
            "  Tasks 1 and 2 run for about a minute each once they start; each is deleted at once, its "
            f"bucket too, and its command ends by itself after {SELF_STOP_SECONDS // 60} minutes.",
            f"  Qarnot tells no price before a task runs (balance: {balance}); the credits spent are shown "
            "at the end.",
        ]


@dataclass(frozen=True)
class Finding:
    check: str  # a key of CHECKS
    answer: str  # what was found, one line
    known: bool = True  # False: the probe could not tell
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"answer": self.answer, "known": self.known, **self.details}


@dataclass(frozen=True)
class SpentTask:
    name: str
    id: str
    credits: float | None  # euros, when Qarnot reported them before the task was deleted


@dataclass
class DoctorReport:
    backend: str  # its name
    profile: str
    image: str
    findings: dict[str, Finding] = field(default_factory=dict)
    tasks: list[SpentTask] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # what could not be deleted, and how to

    @property
    def rows(self) -> list[Finding]:
        return [self.findings[key] for key in CHECKS if key in self.findings]

    @property
    def credits(self) -> float | None:
        known = [task.credits for task in self.tasks if task.credits is not None]
        return sum(known) if known else None

    @property
    def complete(self) -> bool:
        return all(finding.known for finding in self.rows) and not self.left

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend, "profile": self.profile, "image": self.image,
            "checks": {finding.check: finding.as_dict() for finding in self.rows},
            "tasks": [{"name": t.name, "id": t.id, "credits": t.credits} for t in self.tasks],
            "credits": self.credits, "left": self.left,
        }  # fmt: skip


# --- what the probe task prints, and how it is read ---------------------------------------------------

BEGIN, END = "qimg-doctor-begin", "qimg-doctor-end"
_UID = re.compile(r"qimg-doctor-uid (\d{1,10})")
_WORKDIR = re.compile(
    r"qimg-doctor-workdir (?:(\d{1,10}) ([0-7]{3,4}) ([A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)|missing)"
)
_SECRET = re.compile(r"qimg-doctor-secret ([A-Za-z_][A-Za-z0-9_]{0,127})")
MAX_SECRET_NAMES = 16


def probe_command(nonce: str) -> str:
    """DOCKER_CMD of probes 1 and 2. `nonce` is the secret's value: the names whose value it is are
    printed, never a value. No `${`: Qarnot would substitute it."""
    script = [
        f"echo {BEGIN}",
        "echo qimg-doctor-uid $(id -u)",
        f"stat -c 'qimg-doctor-workdir %u %a %U' {WORKDIR} 2>/dev/null || echo qimg-doctor-workdir missing",
        f"env | grep -x '[A-Za-z_][A-Za-z0-9_]*={nonce}' | cut -d= -f1 | sed 's/^/qimg-doctor-secret /'",
        f"echo qimg doctor > {WORKDIR}/{RESULT_FILE}",
        f"dd if=/dev/zero of={WORKDIR}/qimg-doctor-padding bs=1048576 count={PADDING_MB} 2>/dev/null",
        f"echo {END}",
        f"sleep {SELF_STOP_SECONDS}",
    ]
    return "sh -c " + shlex.quote("\n".join(script))


@dataclass(frozen=True)
class ProbeOutput:
    uid: int  # the command ran as
    workdir: tuple[int, str, str] | None  # owner's uid, mode (octal), owner's name; None: missing
    secret_names: tuple[str, ...]  # environment variables whose value is the secret's


def parse_output(text: str) -> ProbeOutput | None:
    """The last complete block the probe printed; None while there is none. Anything in the block that
    is not exactly what the script prints is refused (ValueError): the output is the task's."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    ends = [index for index, line in enumerate(lines) if line == END]
    begins = [index for index, line in enumerate(lines) if line == BEGIN]
    block = next(
        (lines[begin + 1 : end] for end in reversed(ends) for begin in reversed(begins) if begin < end), None
    )
    if block is None:
        return None
    uids: list[int] = []
    workdirs: list[tuple[int, str, str] | None] = []
    names: list[str] = []
    for line in block:
        if match := _UID.fullmatch(line):
            uids.append(int(match[1]))
        elif match := _WORKDIR.fullmatch(line):
            workdirs.append((int(match[1]), match[2], match[3]) if match[1] else None)
        elif match := _SECRET.fullmatch(line):
            names.append(match[1])
        else:
            raise ValueError(f"a line qimg does not expect: {_shown(line)}")
    if len(uids) != 1 or len(workdirs) != 1 or len(names) > MAX_SECRET_NAMES or len(set(names)) != len(names):
        raise ValueError("not the lines the probe prints (one uid, one workdir, a few distinct names)")
    return ProbeOutput(uids[0], workdirs[0], tuple(sorted(names)))


def _shown(text: str, limit: int = 120) -> str:
    """Text from outside, made harmless for a terminal: no control characters, bounded."""
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


# --- the plan: checked before anything is created ----------------------------------------------------


def open_backend(name: str) -> DoctorBackend:
    """The backend called `name`, opened for the probes: each capability they use is asked for."""
    backend = registry.open_backend(name)
    registry.require(backend, STORAGE, "qimg doctor")
    registry.require(backend, ACCOUNT, "qimg doctor")
    registry.require(backend, HARDWARE, "qimg doctor")
    if not isinstance(backend, DoctorBackend):  # neither settings nor credits: not a cloud's account
        raise BackendError(f"the {backend.name} backend cannot run qimg doctor")
    return backend


def plan_doctor(image: str | None, profile: str | None, timeout: float, backend: str) -> DoctorPlan:
    """The image, the profile and the RAM value of the probes, and the account's room for them."""
    from qimg.launcher.options import check_timeout
    from qimg.launcher.plan import check_registry_reachable

    check_timeout(timeout)
    ref = ImageRef.parse(image or DEFAULT_IMAGE, "--image")
    if ref.digest:
        raise UsageError(f"--image {ref}: Qarnot takes a tag (DOCKER_TAG), not a digest: give REPOSITORY:TAG")
    check_registry_reachable(ref)
    opened = open_backend(backend)
    chosen = _profile(profile, opened.profile_names())
    ram_offers = tuple(
        sorted(
            float(offer.value)
            for offer in opened.hardware_offers()
            if offer.kind == "MinimumRamHardwareConstraint" and _is_size(offer.value)
        )
    )
    ram_mb = int(ram_offers[-1]) + RAM_EXTRA_MB if ram_offers else RAM_WITHOUT_OFFERS_MB
    for note in account.check_quotas(TaskRequest("doctor", str(ref), chosen, 1), opened.account()):
        notices.warn(note)  # the organisation's quota is busy: the probes may queue
    return DoctorPlan(opened, ref, chosen, ram_mb, ram_offers, opened.balance(), timeout)


def _profile(asked: str | None, names: list[str]) -> str:
    if asked is not None:
        account.check_known("--profile", asked, names, "qimg profiles")
        if is_cluster_profile(asked):
            raise UsageError(f"--profile {asked}: a cluster profile runs no DOCKER_CMD: give a plain one")
        return asked
    chosen = next((name for name in PROFILES if name in names), None)
    if chosen is None:
        raise UsageError(
            f"the account has none of {', '.join(PROFILES)}: pass --profile NAME (`qimg profiles`)"
        )
    return chosen


def _is_size(value: str) -> bool:
    try:
        size = float(value)
    except ValueError:
        return False
    return 0 < size < 1e9


# --- the run --------------------------------------------------------------------------------------


@dataclass
class _Task:
    """One probe's task, known before it is created: its name, launch tag and bucket."""

    name: str
    launch_id: str
    bucket: str = ""
    id: str = ""
    credits: float | None = None
    credits_read: bool = False


class _Run:
    def __init__(self, plan: DoctorPlan, note: Callable[[str], None]) -> None:
        self.plan, self.backend, self.note = plan, plan.backend, note
        self.report = DoctorReport(plan.backend.name, plan.profile, str(plan.image))
        self.last_look = 0.0

    def pace(self) -> None:
        """Wait until another request fits the backend's budget (and MIN_LOOK has passed)."""
        wait = max(self.backend.poll_not_before(), self.last_look + MIN_LOOK) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_look = time.monotonic()

    @contextlib.contextmanager
    def probe(self, kind: str, *, results: bool) -> Iterator[_Task]:
        """A task (and its bucket) that is deleted on the way out, whatever happened."""
        name = f"doctor-{kind}-{secrets.token_hex(2)}"
        launch_id = secrets.token_hex(8)
        task = _Task(name, launch_id, bucket_name(name, RESULTS, launch_id) if results else "")
        try:
            yield task
        finally:
            self._end(task)

    def create(
        self, task: _Task, *, prints: bool, hardware: Hardware | None = None, queue: int | None = None
    ) -> None:
        """Create the task (and first its bucket), with signals held. With `prints`, it runs the probe's
        script (`probe_command`); otherwise it does nothing (`true`)."""
        nonce = secrets.token_hex(16)
        constants = {}
        if not self.plan.image.on_hub:
            constants["DOCKER_SRV"] = self.plan.image.server_url
        constants |= {
            "DOCKER_REPO": self.plan.image.repository, "DOCKER_TAG": self.plan.image.tag,
            "DOCKER_CMD": probe_command(nonce) if prints else "true", "DOCKER_WORKDIR": WORKDIR,
            SECRET_PREFIX + SECRET_NAME: nonce,
        }  # fmt: skip
        check_constants(constants)
        request = TaskRequest(
            task.name, str(self.plan.image), self.plan.profile, 1, constants, task.launch_id,
            result_bucket=task.bucket, hardware=hardware or Hardware(), max_queue_seconds=queue,
        )  # fmt: skip
        with signals.deferred():
            if task.bucket:
                self.backend.create_bucket(task.bucket)
            task.id = self.backend.submit(request)
        self.note(f"{task.name}: created ({task.id})")

    def spend(self, task: _Task) -> None:
        """What the task has cost, read once, before it is deleted."""
        if task.id and not task.credits_read:
            task.credits_read = True
            with contextlib.suppress(QimgError):
                task.credits = self.backend.credits(task.id)

    def _end(self, task: _Task) -> None:
        with signals.ignored():
            self.spend(task)
            stopped = True
            for line in launch.stop_launch(self.backend, task.id, task.launch_id):
                if line.endswith("stopped and deleted"):
                    self.note(f"{task.name}: deleted")
                else:
                    stopped = False
                    self.report.left.append(line)
            if task.bucket and not stopped:  # a task that may still run keeps its bucket (issue 15, 2.6)
                self.report.left.append(
                    f"bucket {task.bucket} kept: a task of {task.name} may still use it (`qimg stop --all` "
                    f"stops it; then `qimg fetch {task.bucket} DIR` and `qimg stop --all --purge` delete it)"
                )
            elif task.bucket:
                try:
                    self.backend.delete_bucket(task.bucket)
                except QimgError as error:
                    self.report.left.append(
                        f"could not delete bucket {task.bucket}: {error} "
                        "(`qimg stop --all --purge` deletes it)"
                    )
            if task.id:
                self.report.tasks.append(SpentTask(task.name, task.id, task.credits))

    def look(self, task: _Task) -> TaskView:
        self.pace()
        return self.backend.view(task.id)

    def watch(self, task: _Task, done: Callable[[str], bool], seconds: float) -> tuple[list[str], str]:
        """The states the task goes through (each once, in order) until `done` says so ("done"), it is
        gone ("gone") or `seconds` pass ("timeout")."""
        states: list[str] = []
        deadline = time.monotonic() + seconds
        while True:
            try:
                state = self.look(task).state
            except TaskNotFound:
                return states, GONE
            if not states or states[-1] != state:
                states.append(state)
                self.note(f"{task.name}: {state}")
            if done(state):
                return states, DONE
            if time.monotonic() >= deadline:
                return states, TIMEOUT

    def output(self, task: _Task) -> ProbeOutput:
        """What the probe printed, once it printed all of it."""
        deadline = time.monotonic() + self.plan.timeout
        state, reads_after_end = "", 0
        while True:
            view = self.look(task)
            if view.state != state:
                state = view.state
                self.note(f"{task.name}: {state}")
            if state in RUNNING or view.ended:
                try:
                    found = parse_output(self.backend.output(task.id, 0))
                except ValueError as error:
                    raise QimgError(f"task {task.name} printed what qimg cannot read: {error}") from None
                if found is not None:
                    return found
                reads_after_end += view.ended
                if reads_after_end > OUTPUT_READS_AFTER_END:
                    errors = "".join(f": {_shown(error)}" for error in view.errors[:1])
                    raise QimgError(
                        f"task {task.name} is {state} without having printed what it found{errors}"
                    )
            if time.monotonic() >= deadline:
                raise QimgError(
                    f"task {task.name} did not print what it found within {self.plan.timeout:.0f} s (it is "
                    f"{state}): try again with a longer --timeout"
                )

    def has_results(self, task: _Task) -> bool:
        return any(item.key == RESULT_FILE for item in self.backend.objects(task.bucket))


def run_doctor(plan: DoctorPlan, note: Callable[[str], None]) -> DoctorReport:
    """The three probes, one after the other; a probe that fails leaves its checks unknown."""
    run = _Run(plan, note)
    probes = (
        (_results_probe, ("workdir", "secret", "tag_listing", "abort_with_results")),
        (_delete_probe, ("delete_while_uploading",)),
        (_ram_probe, ("unoffered_ram",)),
    )
    for probe, checks in probes:  # a signal raises Interrupted (cli.main): each probe ends its task
        try:
            probe(run)
        except Interrupted:
            raise
        except QimgError as error:
            for check in checks:
                run.report.findings.setdefault(
                    check, Finding(check, f"unknown: {_shown(first_line(error), 200)}", known=False)
                )
    return run.report


def _results_probe(run: _Run) -> None:
    findings = run.report.findings
    with run.probe("results", results=True) as task:
        run.create(task, prints=True)
        findings["tag_listing"] = _listing(run, task)
        printed = run.output(task)
        findings["workdir"] = _workdir_finding(printed)
        findings["secret"] = _secret_finding(printed)
        run.backend.abort(task.id)
        states, how = run.watch(task, lambda state: state in ENDED, RESULTS_WAIT)
        arrived = run.has_results(task)
        ended = how == DONE
        answer = _sequence(states) + ("" if ended else f" (not over after {RESULTS_WAIT:.0f} s)")
        answer += "; the results reached the bucket" if arrived else "; the results did not reach the bucket"
        findings["abort_with_results"] = Finding(
            "abort_with_results", answer, ended, {"states": states, "results_uploaded": arrived}
        )


def _listing(run: _Run, task: _Task) -> Finding:
    """How long after its creation was answered the task's launch tag lists it."""
    created, looks = time.monotonic(), 0
    while True:
        looks += 1
        if any(view.id == task.id for view in run.backend.launched(task.launch_id)):
            seconds = time.monotonic() - created
            answer = (
                "listed at the first look"
                if looks == 1
                else f"listed {seconds:.1f} s after its creation was answered ({looks} looks)"
            )
            return Finding("tag_listing", answer, details={"seconds": round(seconds, 2), "looks": looks})
        if time.monotonic() - created >= LISTING_WAIT:
            return Finding(
                "tag_listing", f"not listed within {LISTING_WAIT:.0f} s ({looks} looks)",
                details={"seconds": None, "looks": looks},
            )  # fmt: skip
        run.pace()


def _workdir_finding(printed: ProbeOutput) -> Finding:
    ran_as = f"the command ran as uid {printed.uid}"
    if printed.workdir is None:
        return Finding(
            "workdir",
            f"{WORKDIR} does not exist; {ran_as}",
            details={"exists": False, "run_uid": printed.uid},
        )
    uid, mode, owner = printed.workdir
    return Finding(
        "workdir", f"owned by uid {uid} ({owner}), mode {mode}; {ran_as}",
        details={"exists": True, "uid": uid, "owner": owner, "mode": mode, "run_uid": printed.uid},
    )  # fmt: skip


def _secret_finding(printed: ProbeOutput) -> Finding:
    full = SECRET_PREFIX + SECRET_NAME
    names = printed.secret_names
    if not names:
        answer = f"{full} is under no name in the environment"
    else:
        answer = f"{full} is in the environment as " + " and ".join(names)
    return Finding(
        "secret", answer,
        details={
            "sent_as": full, "names": list(names), "full_name": full in names,
            "bare_name": SECRET_NAME in names,
        },
    )  # fmt: skip


def _delete_probe(run: _Run) -> None:
    check = "delete_while_uploading"
    with run.probe("delete", results=True) as task:
        run.create(task, prints=True)
        run.output(task)  # its results are in /job
        run.backend.abort(task.id)
        states, how = run.watch(
            task, lambda state: state == "UploadingResults" or state in ENDED, RESULTS_WAIT
        )
        if how != DONE or states[-1] != "UploadingResults":
            run.report.findings[check] = Finding(
                check, f"not seen: after the abort the task was {_sequence(states)}", known=False,
                details={"states": states},
            )  # fmt: skip
            return
        run.spend(task)
        try:
            run.backend.stop(task.id)
        except Interrupted:
            raise
        except QimgError as error:
            refusal = _shown(first_line(error), 200)
            after, _ = run.watch(task, lambda state: state in ENDED, RESULTS_WAIT)
            answer = f"refused ({refusal}); then {_sequence(after)}"
            details: dict[str, object] = {"accepted": False, "message": refusal, "states": after}
        else:
            after, how = run.watch(task, lambda state: False, GONE_WAIT)
            if how == GONE:
                answer = f"accepted; then {_sequence([*after, 'gone'])}"
            else:
                answer = f"accepted; then {_sequence(after)}, not gone after {GONE_WAIT:.0f} s"
            details = {"accepted": True, "states": after, "gone": how == GONE}
        arrived = run.has_results(task)
        answer += "; the results reached the bucket" if arrived else "; the results did not reach the bucket"
        run.report.findings[check] = Finding(check, answer, details={**details, "results_uploaded": arrived})


def _ram_probe(run: _Run) -> None:
    asked = run.plan.ram_mb
    details: dict[str, object] = {"asked_mb": asked, "offers_mb": list(run.plan.ram_offers)}
    with run.probe("ram", results=False) as task:
        try:
            run.create(task, prints=False, hardware=Hardware(min_ram_mb=asked), queue=RAM_QUEUE_SECONDS)
        except Interrupted:
            raise
        except BackendError as error:
            message = _shown(first_line(error), 200)
            # The SDK's own sign of a refused constraint (a 402 without it: credits); else not an answer.
            if "hardware constraint" not in message:
                raise
            run.report.findings["unoffered_ram"] = Finding(
                "unoffered_ram", f"{asked} MB refused: {message}",
                details={**details, "outcome": "refused", "message": message},
            )  # fmt: skip
            return
        states, how = run.watch(task, lambda state: state not in QUEUED, RAM_WATCH_SECONDS)
    if how == TIMEOUT:
        answer = (
            f"{asked} MB accepted: still {states[-1]} after {RAM_WATCH_SECONDS:.0f} s (it waits in the queue)"
        )
        outcome = "queued"
    else:
        answer, outcome = f"{asked} MB accepted, then {_sequence(states)}", "left the queue"
    run.report.findings["unoffered_ram"] = Finding(
        "unoffered_ram", answer, details={**details, "outcome": outcome, "states": states}
    )


def _sequence(states: list[str]) -> str:
    return ", then ".join(states) or "gone"
