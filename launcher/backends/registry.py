"""The places that run tasks, by name: the one list of backends, and the one answer to "can this
backend do X" (with the line that refuses when it cannot).

A backend is a class implementing `base.Backend`, constructed with no argument; what else it can do
it says by implementing the capability protocols of `base` (`STORAGE`, `ACCOUNT`, `HARDWARE`).
It is registered here by its import path, so that its libraries (the Qarnot SDK, boto3) are imported
only when it is opened; a third backend is a new module and one `register` line. Commands pass a
backend's name: the user's `--local` becomes `LOCAL` in `qimg.commands`, and no layer below them
knows which backend is which.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TypeVar, cast

from qimg.errors import UsageError
from qimg.launcher.backends.base import Backend, Capability

T = TypeVar("T")


@dataclass(frozen=True)
class Registration:
    name: str  # what records and `--json` outputs say
    target: str  # "package.module:Class", imported when the backend is opened
    described: str  # in a sentence: "Qarnot", "the local engine"
    option: str = ""  # the option that chooses it ("" for the default)
    # Where a task's image comes from: its registry, pulled by the backend's machines (Qarnot), or
    # this machine's engine (local): where `qimg run` looks for it, and whether it needs credentials.
    pulls_from_registry: bool = True


REGISTERED: dict[str, Registration] = {}


def register(
    name: str, target: str, described: str, option: str = "", *, pulls_from_registry: bool = True
) -> None:
    REGISTERED[name] = Registration(name, target, described, option, pulls_from_registry)


register("qarnot", "qimg.launcher.backends.qarnot:QarnotBackend", "Qarnot")
register(
    "local", "qimg.launcher.backends.local:LocalBackend", "the local engine", "--local",
    pulls_from_registry=False,
)  # fmt: skip
DEFAULT, LOCAL = "qarnot", "local"


def registration(name: str) -> Registration:
    try:
        return REGISTERED[name]
    except KeyError:
        known = ", ".join(REGISTERED)
        raise UsageError(f"no backend named {name!r}: qimg knows {known}") from None


def backend_class(name: str) -> type[Backend]:
    module, _, attribute = registration(name).target.partition(":")
    return cast(type[Backend], getattr(importlib.import_module(module), attribute))


def open_backend(name: str) -> Backend:
    """The backend called `name`, connected (Qarnot: needs a token; local: the Docker engine)."""
    backend = backend_class(name)()
    backend.name = name  # called what it was registered as: its name is written here only
    return backend


def can(name: str, capability: Capability[T]) -> bool:
    return issubclass(backend_class(name), capability.protocol)


def refusal(name: str, capability: Capability[T], what: str) -> UsageError:
    """One line: `what` needs `capability`, the backend `name` has none, and which option gives it."""
    having = [r for r in REGISTERED.values() if r.name != name and can(r.name, capability)]
    chosen = registration(name)
    if chosen.option:
        hint = f" (drop {chosen.option})"
    else:
        hint = next((f" (add {r.option})" for r in having if r.option), "")
    where = " or ".join(r.described for r in having) or "no backend"
    return UsageError(f"{what} is for {where} ({capability.noun}): {chosen.described} has none{hint}")


def check(name: str, capability: Capability[T], what: str) -> None:
    """Refuse `what` on the backend `name` unless it has `capability` (before anything is opened)."""
    if not can(name, capability):
        raise refusal(name, capability, what)


def require(backend: Backend, capability: Capability[T], what: str) -> T:
    """`backend` as the capability's protocol, or the one-line refusal."""
    if isinstance(backend, capability.protocol):
        return cast(T, backend)
    raise refusal(backend.name, capability, what)
