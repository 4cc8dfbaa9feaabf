"""The Qarnot account: `profiles`, `hardware`, `account` (balance and quotas)."""

from __future__ import annotations

from qimg.commands.common import ACCOUNT, JsonOpt, app, backend_of
from qimg.display import account as display


@app.command(rich_help_panel=ACCOUNT)
def profiles(as_json: JsonOpt = False) -> None:
    """The account's Qarnot profiles; those marked ssh forward port 22, so `qimg run` can log in; those
    marked gpu are the ones `qimg run --gpu` takes."""
    from qimg.launcher import account

    backend = backend_of(False)
    display.profiles(backend, account.profiles(account.open_account(backend, "qimg profiles")), as_json)


@app.command(rich_help_panel=ACCOUNT)
def hardware(as_json: JsonOpt = False) -> None:
    """The hardware the account may ask for, and the `qimg run` option that asks for it."""
    from qimg.launcher import account

    backend = backend_of(False)
    offers = account.open_hardware(backend, "qimg hardware").hardware_offers()
    rows = [(offer.kind, offer.value, account.option_for(offer)) for offer in offers]
    display.hardware(backend, rows, as_json)


@app.command("account", rich_help_panel=ACCOUNT)
def account_command(as_json: JsonOpt = False) -> None:
    """The account's balance and quotas: tasks, and instances and cores per scheduling plan."""
    from qimg.launcher import account

    backend = backend_of(False)
    display.summary(backend, account.summary(account.open_account(backend, "qimg account")), as_json)
