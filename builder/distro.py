"""Which distro family a base image belongs to, read from its /etc/os-release."""

from __future__ import annotations

import shlex

from qimg.builder.spec import Distro
from qimg.engine_api import Engine
from qimg.errors import UsageError

_FAMILIES = {os_id: family for family in Distro for os_id in family.os_ids}
_CHOICES = "--distro " + "|".join(d.value for d in Distro)


def parse_os_release(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            words = shlex.split(value, comments=False) if value.strip() else [""]
            fields[key.strip()] = words[0] if words else ""
    return fields


def family_of(os_release: dict[str, str]) -> Distro | None:
    """The family named by ID, else by the first known name in ID_LIKE."""
    names = [os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()]
    return next((_FAMILIES[name] for name in names if name in _FAMILIES), None)


def detect(engine: Engine, base: str) -> Distro:
    if engine.image(base) is None:
        raise UsageError(f"cannot read the distro of {base}: it is not a local image; pass {_CHOICES}")
    content = engine.read_image_files(base, ["/etc/os-release"])["/etc/os-release"]
    if content is None:
        raise UsageError(f"{base} has no /etc/os-release: pass {_CHOICES}")
    os_release = parse_os_release(content.decode("utf-8", "replace"))
    family = family_of(os_release)
    if family is None:
        raise UsageError(
            f"{base} is {os_release.get('ID', 'an unknown distro')}, not a known family: pass {_CHOICES}"
        )
    return family


def resolve(choice: str, base: str, engine: Engine | None = None) -> Distro:
    """The distro family named by `--distro`, or with "auto" the one the base image says it is."""
    return Distro.named(choice) if choice != "auto" else detect(engine or Engine.from_env(), base)
