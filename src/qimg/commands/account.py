"""The Qarnot account: `profiles`, `hardware`, `account` (balance and quotas)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from qimg.commands.common import JsonOpt, app, backend_of

if TYPE_CHECKING:
    from qimg.launcher.backends.base import Quota


@app.command()
def profiles(as_json: JsonOpt = False) -> None:
    """The account's Qarnot profiles; those marked ssh forward port 22, so `qimg run` can log in; those
    marked gpu are the ones `qimg run --gpu` takes."""
    from qimg.launcher import account

    backend = backend_of(False)
    found = account.profiles(account.open_account(backend, "qimg profiles"))
    if as_json:
        print(json.dumps({"backend": backend, "profiles": [profile.as_dict() for profile in found]}))
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


@app.command()
def hardware(as_json: JsonOpt = False) -> None:
    """The hardware the account may ask for, and the `qimg run` option that asks for it."""
    from qimg.launcher import account

    backend = backend_of(False)
    offers = account.open_hardware(backend, "qimg hardware").hardware_offers()
    rows = [(offer.kind, offer.value, account.option_for(offer)) for offer in offers]
    if as_json:
        hardware_list = [{"kind": kind, "value": value, "option": option} for kind, value, option in rows]
        print(json.dumps({"backend": backend, "hardware": hardware_list}))
        return
    if not rows:
        print("the Qarnot account lists no hardware constraints")
        return
    kinds = max(len(kind) for kind, _, _ in rows)
    values = max(len(value) for _, value, _ in rows)
    print("hardware the Qarnot account may ask for (and how: qimg run OPTION):")
    for kind, value, option in rows:
        print(f"  {kind:<{kinds}}  {value:<{values}}  {option or ''}".rstrip())


@app.command("account")
def account_command(as_json: JsonOpt = False) -> None:
    """The account's balance and quotas: tasks, and instances and cores per scheduling plan."""
    from dataclasses import asdict

    from qimg.launcher import account

    backend = backend_of(False)
    view = account.summary(account.open_account(backend, "qimg account"))
    if as_json:
        print(json.dumps({"backend": backend, **asdict(view)}))
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
