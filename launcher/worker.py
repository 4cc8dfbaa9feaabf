"""A task used as a worker: the environment and secrets its ssh sessions see, the hardware it needs,
how Qarnot schedules it, and on a cluster profile what its master and its workers run.

`plan` checks every value the user gave (one line and exit 2 for a bad one, before anything is
created); `WorkerPlan.apply` puts them into the task's request once its constants are known.
Secret values come from qimg's own environment, never from the command line, and no message here
ever shows one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from qimg.errors import UsageError
from qimg.launcher.backends import registry
from qimg.launcher.backends.base import HARDWARE, MB_PER_GB, Hardware, TaskRequest, is_cluster_profile
from qimg.launcher.contract import check_constants
from qimg.launcher.options import WorkerOptions

# `--scheduling` names, and Qarnot's.
SCHEDULING = {"flex": "Flex", "on-demand": "OnDemand", "reserved": "Reserved"}
# A constant with this prefix is write-only on Qarnot: reading the task back shows [SECRET].
SECRET_PREFIX = "QARNOT_SECRET__"
# The names (not the values) of the secrets, for qimg-start: it hands them to the login user only.
SECRETS_CONSTANT = "QIMG_SECRETS"
# Upper case, as environment variables are by convention: the start script's own variables are all
# lower case, and a name of theirs would be overwritten by the script before it read the value.
VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]*")
HARDWARE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/-]{0,199}")
MAX_CORES = 1024  # qimg's own bounds, far above any machine: they catch typos, not policy
MAX_RAM_GB = 16384
RESERVATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# What qimg-start's environment dump (images/qimg-start.sh) keeps out of login shells: qimg's and
# the platform's variables and those every session sets for itself, then names that look like
# secrets. A variable of the first kind would override what qimg or Qarnot sets (PATH and LD_*
# would change what the start script and sshd run, as root); one of the second would silently not
# reach ssh sessions.
RESERVED = (
    "DOCKER_*", "QIMG_*", "QARNOT_*", "INSTANCE_ID", "INSTANCE_COUNT", "HOME", "USER", "LOGNAME",
    "SHELL", "PWD", "OLDPWD", "SHLVL", "TERM", "HOSTNAME", "MAIL", "PS1", "PS2", "PS4", "IFS", "PPID", "_",
    "PATH", "LD_*",
)  # fmt: skip
SECRET_LOOKING = (
    "*PASSWORD*", "*PASSWD*", "*SECRET*", "*TOKEN*", "*CREDENTIAL*", "*PRIVATE*", "*_KEY", "*_KEYS",
)  # fmt: skip
# Qarnot's limits on constants (its API model documentation), and its ${NAME} substitution.
SUBSTITUTED = "${"
SUBSTITUTION = "which Qarnot replaces with a task value before the container starts"


@dataclass(frozen=True)
class WorkerPlan:
    """The checked options, ready to go into a request."""

    constants: dict[str, str] = field(default_factory=dict, repr=False)  # secrets among them
    hardware: Hardware = field(default_factory=Hardware)
    scheduling: str = "Flex"
    max_queue_seconds: int | None = None
    reservation: str | None = None

    def apply(self, request: TaskRequest, *, qimg_image: bool) -> TaskRequest:
        """The request with the worker's pieces; its constants checked against Qarnot's limits."""
        if self.constants and not qimg_image:
            raise UsageError(
                f"--env and --secret reach ssh sessions through the start script of images qimg built, "
                f"and {request.image} is not one: build one on it with `qimg build --base {request.image}`"
            )
        cluster = is_cluster_profile(request.profile)
        constants = {**request.constants, **self.constants}
        if cluster:  # the master and the workers run the same start script (sshd, the deadline)
            start = constants.pop("DOCKER_CMD")
            constants |= {"DOCKER_CMD_MASTER": start, "DOCKER_CMD_WORKER": start}
        check_constants(constants)
        return replace(
            request, constants=constants, hardware=self.hardware, scheduling=self.scheduling,
            max_queue_seconds=self.max_queue_seconds, reservation=self.reservation,
            entries=(0,) if cluster else None,
        )  # fmt: skip


def plan(
    options: WorkerOptions, *, backend: str, max_queue_seconds: int | None, environ: Mapping[str, str]
) -> WorkerPlan:
    """Every option checked for the backend named `backend`; secret values read from `environ` (qimg's
    environment)."""
    check_machine_choice(options, backend, max_queue_seconds)
    return WorkerPlan(
        environment_constants(options.env, options.secrets, environ), hardware(options),
        scheduling(options.scheduling), max_queue_seconds, reservation(options),
    )  # fmt: skip


def check_machine_choice(options: WorkerOptions, backend: str, max_queue_seconds: int | None) -> None:
    """Hardware and scheduling need a backend that chooses machines: elsewhere (the local engine) they
    would silently mean nothing."""
    asked = [
        ("--cores", options.cores is not None), ("--ram", options.ram_gb is not None),
        ("--gpu", options.gpu), ("--ssd", options.ssd), ("--hardware", bool(options.hardware)),
        ("--scheduling", options.scheduling != WorkerOptions.scheduling),  # its default: flex
        ("--reservation", options.reservation is not None), ("--max-queue", max_queue_seconds is not None),
    ]  # fmt: skip
    for option, given in asked:
        if given:
            registry.check(backend, HARDWARE, option)


def environment_constants(
    env: tuple[str, ...], secret_names: tuple[str, ...], environ: Mapping[str, str]
) -> dict[str, str]:
    """--env as constants, --secret as write-only constants (values from `environ`) and the list of
    their names for the start script."""
    constants: dict[str, str] = {}
    seen: set[str] = set()
    for item in env:
        name, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"invalid --env {item!r}: give KEY=VALUE")
        check_variable("--env", name, seen)
        if any(fnmatchcase(name, pattern) for pattern in SECRET_LOOKING):
            raise UsageError(
                f"--env {name}: a name like that looks like a secret, and the start script keeps it out "
                f"of ssh sessions: export it and pass --secret {name} (write-only on Qarnot)"
            )
        if SUBSTITUTED in value:
            raise UsageError(f"--env {name}: the value contains '{SUBSTITUTED}', {SUBSTITUTION}")
        constants[name] = value
    for name in secret_names:
        if "=" in name:  # never show what follows: it is a value
            raise UsageError(
                "--secret takes a NAME, not NAME=VALUE: the value comes from qimg's environment "
                "(export NAME=... first), never from the command line"
            )
        if not VARIABLE.fullmatch(name):  # not shown either: it may be a value given by mistake
            raise UsageError(
                "invalid --secret: give the NAME of a variable of qimg's environment (upper-case "
                "letters, digits and _, not starting with a digit)"
            )
        check_variable("--secret", name, seen)
        value = environ.get(name, "")
        if not value:
            raise UsageError(
                f"--secret {name}: {name} is not set (or empty) in qimg's environment: export it first"
            )
        if SUBSTITUTED in value:
            raise UsageError(f"--secret {name}: the value contains '{SUBSTITUTED}', {SUBSTITUTION}")
        constants[SECRET_PREFIX + name] = value
    if secret_names:
        constants[SECRETS_CONSTANT] = " ".join(secret_names)
    return constants


def check_variable(option: str, name: str, seen: set[str]) -> None:
    if not VARIABLE.fullmatch(name):
        raise UsageError(f"invalid {option} name {name!r}: letters, digits and _, not starting with a digit")
    if any(fnmatchcase(name, pattern) for pattern in RESERVED):
        raise UsageError(f"{option} {name}: that name is set by qimg, Qarnot or every session: pick another")
    if name in seen:
        raise UsageError(f"{option} {name}: given twice (--env and --secret names are one set)")
    seen.add(name)


def hardware(options: WorkerOptions) -> Hardware:
    """--cores, --ram (decimal GB, sent in decimal MB as Qarnot's offers list them: 32 is 32000), --gpu,
    --ssd, --hardware as Qarnot's hardware constraints. Whether the account offers them is checked
    against its offers (`account.check_hardware`)."""
    cores = options.cores
    if cores is not None and not 1 <= cores <= MAX_CORES:
        raise UsageError(f"invalid --cores {cores}: from 1 to {MAX_CORES}")
    ram = options.ram_gb
    if ram is not None and not (math.isfinite(ram) and 0 < ram <= MAX_RAM_GB):
        raise UsageError(f"invalid --ram {ram}: gigabytes above 0, at most {MAX_RAM_GB}")
    for key in options.hardware:
        if not HARDWARE_KEY.fullmatch(key):
            raise UsageError(f"invalid --hardware {key!r}: a key as `qimg hardware` lists them")
    return Hardware(
        min_cores=cores,
        # Decimal, as Qarnot's offers (32000.0 MB is "32 GB"); rounded up to a whole MB, after the
        # float noise of the product (0.1 * 1000 is 100.00000000000001) is rounded away.
        min_ram_mb=math.ceil(round(ram * MB_PER_GB, 6)) if ram is not None else None,
        gpu=options.gpu,
        ssd=options.ssd,
        keys=tuple(dict.fromkeys(options.hardware)),
    )


def scheduling(name: str) -> str:
    if name not in SCHEDULING:
        raise UsageError(
            f"invalid --scheduling {name!r}: flex (the default; may be preempted), on-demand or reserved"
        )
    return SCHEDULING[name]


def reservation(options: WorkerOptions) -> str | None:
    """The reservation a Reserved task targets (Qarnot's targetedReservationName): required with
    reserved scheduling, meaningless without it."""
    name = options.reservation
    if options.scheduling != "reserved":
        if name is not None:
            raise UsageError(f"--reservation {name!r}: only with --scheduling reserved")
        return None
    if name is None:
        raise UsageError(
            "--scheduling reserved needs --reservation NAME: the reservation the task runs on "
            "(`qimg account` lists the account's)"
        )
    if not RESERVATION_NAME.fullmatch(name):
        raise UsageError(f"invalid --reservation {name!r}: a reservation's name as `qimg account` lists it")
    return name


def cluster_note(request: TaskRequest) -> str | None:
    """What the user should know about a cluster task's instances, before it starts."""
    if request.entries is None:
        return None
    workers = request.instances - 1
    return (
        f"cluster profile {request.profile}: instance 0 is the master, the only one forwarded; ssh and "
        f"--command reach it alone"
        + (f"; {workers} worker{'s' if workers > 1 else ''} run DOCKER_CMD_WORKER" if workers else "")
    )
