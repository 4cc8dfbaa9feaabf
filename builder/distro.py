"""Which distro family a base image belongs to, read from its /etc/os-release.

Reading the file takes a container created and removed (about 0.1 s, most of a no-op rebuild's
cost), so the family found is remembered by the image's ID, which names its content: a base image
retagged or pulled anew has another ID and is read again.
"""

from __future__ import annotations

import json
import re
import shlex

from qimg import state
from qimg.builder.spec import Distro
from qimg.engine_api import Engine
from qimg.errors import UsageError

_FAMILIES = {os_id: family for family in Distro for os_id in family.os_ids}
_CHOICES = "--distro " + "|".join(d.value for d in Distro)
_KNOWN_FILE = "base-distros"
_KNOWN_IMAGES = 64  # remembered, the most recent last: enough for the bases one user builds on
_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{64}")


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


def _known() -> dict[str, Distro]:
    """The families remembered, by image ID. The file is untrusted: what is not an ID and a family is
    left out, and a file that cannot be read or parsed counts as empty (the next detection rewrites it)."""
    try:
        found = json.loads(state.cached(_KNOWN_FILE, 1 << 16) or b"{}")
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    values = {family.value: family for family in Distro}
    return {
        image_id: values[family] for image_id, family in found.items()
        if isinstance(family, str) and family in values and _IMAGE_ID.fullmatch(image_id)
    }  # fmt: skip


def _remember(image_id: str, family: Distro) -> None:
    known = {key: value.value for key, value in _known().items() if key != image_id}
    known[image_id] = family.value
    kept = dict(list(known.items())[-_KNOWN_IMAGES:])
    state.cache(_KNOWN_FILE, json.dumps(kept) + "\n")


def detect(engine: Engine, base: str) -> Distro:
    inspected = engine.image(base)
    if inspected is None:
        raise UsageError(f"cannot read the distro of {base}: it is not a local image; pass {_CHOICES}")
    image_id = inspected.get("Id")
    if not (isinstance(image_id, str) and _IMAGE_ID.fullmatch(image_id)):
        return _read_family(engine, base)  # an engine's answer not shaped as an ID names nothing
    family = _known().get(image_id)
    if family is None:
        family = _read_family(engine, base)
        _remember(image_id, family)
    return family


def _read_family(engine: Engine, base: str) -> Distro:
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
