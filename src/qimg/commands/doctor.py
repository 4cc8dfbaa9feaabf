"""`doctor`: what only a real Qarnot account tells, found with three small tasks (asked for first)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from qimg.commands.common import ACCOUNT, JsonOpt, app, backend_of
from qimg.display import account as display
from qimg.errors import QimgError, UsageError


@app.command(rich_help_panel=ACCOUNT)
def doctor(
    yes: Annotated[
        bool, typer.Option("--yes", help="Create the tasks without asking (needed without a terminal).")
    ] = False,
    image: Annotated[
        str | None,
        typer.Option("--image", help="A small public image with sh, stat, grep and dd (default busybox)."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="Qarnot profile (default: docker-batch, else docker-network...)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds a task may take to start and print what it found.")
    ] = 900.0,
    as_json: JsonOpt = False,
) -> None:
    """Settle, with three small tasks on your account, what Qarnot leaves undocumented: who owns /job,
    where a QARNOT_SECRET__ constant lands, an unoffered RAM value, the states after an abort with
    results and a DELETE while they upload, how soon a task is listed by its tag. The cost is shown and
    asked for first; every task is deleted at once."""
    if not yes and not sys.stdin.isatty():
        raise UsageError(
            "qimg doctor creates billed tasks and asks first: pass --yes to run it without a terminal"
        )
    from qimg.launcher import doctor as probes

    plan = probes.plan_doctor(image, profile, timeout, backend_of(False))
    display.estimate(plan.estimate())
    if not yes and not display.confirmed("Create them? [y/N] "):
        raise QimgError("not confirmed: no task was created")
    report = probes.run_doctor(plan, display.probing)
    display.doctor(report, as_json)
    if not report.complete:
        raise typer.Exit(1)
