"""What the account's commands show: `profiles`, `hardware`, `account` and `doctor`."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from qimg import notices
from qimg.display import print_json, say, stderr

if TYPE_CHECKING:
    from qimg.launcher.account import Profile
    from qimg.launcher.backends.base import AccountView, Quota
    from qimg.launcher.doctor import DoctorReport


def profiles(backend: str, found: list[Profile], as_json: bool) -> None:
    if as_json:
        print_json({"backend": backend, "profiles": [profile.as_dict() for profile in found]})
        return
    width = max((len(profile.name) for profile in found), default=0)
    print("profiles of the Qarnot account (ssh: `qimg run --profile NAME` can log in):")
    for profile in found:
        marks = ", ".join(
            mark
            for mark, on in (("ssh", profile.ssh), ("cluster", profile.cluster), ("gpu", profile.gpu))
            if on
        )
        print(f"  {profile.name:<{width}}  {marks}".rstrip())


def hardware(backend: str, rows: list[tuple[str, str, str | None]], as_json: bool) -> None:
    """Each offer: its kind, its value, and the `qimg run` option that asks for it (None: none does)."""
    if as_json:
        hardware_list = [{"kind": kind, "value": value, "option": option} for kind, value, option in rows]
        print_json({"backend": backend, "hardware": hardware_list})
        return
    if not rows:
        print("the Qarnot account lists no hardware constraints")
        return
    kinds = max(len(kind) for kind, _, _ in rows)
    values = max(len(value) for _, value, _ in rows)
    print("hardware the Qarnot account may ask for (and how: qimg run OPTION):")
    for kind, value, option in rows:
        print(f"  {kind:<{kinds}}  {value:<{values}}  {option or ''}".rstrip())


def summary(backend: str, view: AccountView, as_json: bool) -> None:
    if as_json:
        print_json({"backend": backend, **asdict(view)})
        return
    print(f"balance: {'unknown' if view.balance is None else f'{view.balance:.2f} EUR'}")
    print(
        f"tasks: {_of(view.tasks, view.max_tasks)} (finished ones count until deleted), "
        f"{_of(view.running_tasks, view.max_running_tasks)} submitted or running"
        + ("" if view.max_instances is None else f"; at most {view.max_instances} instances per task")
    )
    for quota in view.quotas:
        print(_quota_line(quota))


def _of(used: int | None, limit: int | None) -> str:
    return f"{'?' if used is None else used} of {'?' if limit is None else limit}"


def _quota_line(quota: Quota) -> str:
    instances = _of(quota.running_instances, quota.max_instances)
    return f"{quota.name}: instances {instances}, cores {_of(quota.running_cores, quota.max_cores)}"


def estimate(lines: list[str]) -> None:
    """What `qimg doctor` will create and cost, before it asks."""
    console = stderr()
    for line in lines:
        say(console, line)


def confirmed(question: str) -> bool:
    """The user's yes to `question`, asked on the terminal."""
    sys.stderr.write(question)
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in {"y", "yes"}


def probing(line: str) -> None:
    """What the doctor's probes are doing (dim)."""
    say(stderr(), f"  {line}", "dim")


def doctor(report: DoctorReport, as_json: bool) -> None:
    """What `qimg doctor` found: one row per check, then the tasks it made and what they cost."""
    if as_json:
        print_json(report.as_dict())
    else:
        from rich.console import Console
        from rich.table import Table

        from qimg.launcher.doctor import CHECKS

        table = Table(
            title=f"qimg doctor: profile {report.profile}, image {report.image}", title_justify="left"
        )
        for column in ("check", "found"):
            table.add_column(column, overflow="fold")
        for finding in report.rows:
            table.add_row(CHECKS[finding.check], finding.answer if finding.known else f"? {finding.answer}")
        console = Console(highlight=False, width=max(100, Console().width))
        console.print(table)
        spent = "not reported" if report.credits is None else f"{report.credits:.4f} EUR"
        say(console, f"{len(report.tasks)} tasks created and deleted; credits spent: {spent}")
    for line in report.left:
        notices.warn(line)
