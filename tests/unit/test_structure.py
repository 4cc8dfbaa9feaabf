"""The worked examples of ARCHITECTURE.md, held against the code: what a change must touch is only what
the example says, because nothing else names the thing it adds.

- a backend is named only where it is registered (no `"qarnot"` elsewhere, no `local` flag below the
  commands);
- a distro family is one member of `Distro` and its template (no other module lists families).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import qimg
from qimg.builder.spec import Distro
from qimg.launcher.backends import registry

PACKAGE = Path(qimg.__file__).resolve().parent
SOURCE = Path(qimg.__file__).parent  # src/qimg, whose builder/launcher/images are links


def modules() -> Iterator[tuple[str, ast.Module]]:
    """Every module of the package, by its path under src/qimg (the links followed)."""
    for folder, _, names in sorted(os.walk(SOURCE, followlinks=True)):
        for name in sorted(names):
            if name.endswith(".py"):
                path = Path(folder, name)
                yield str(path.relative_to(SOURCE)), ast.parse(path.read_text(), str(path))


def backend_names(tree: ast.Module) -> Iterator[ast.Constant]:
    """The string constants that name a backend: "qarnot" anywhere; the other names (plain words, such
    as sshd's `AllowTcpForwarding local`) where compared with something."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == registry.DEFAULT:
            yield node
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in registry.REGISTERED:
                    yield side


def test_backends_are_named_only_in_the_registry() -> None:
    named = [
        f"{where}:{node.lineno}"
        for where, tree in modules()
        if where != "launcher/backends/registry.py"
        for node in backend_names(tree)
    ]
    assert named == [], f"a backend's name written outside launcher/backends/registry.py: {named}"


def test_no_local_flag_below_the_commands() -> None:
    flags = [
        f"{where}:{node.lineno} {node.arg}"
        for where, tree in modules()
        if not where.startswith("commands/")
        for node in ast.walk(tree)
        if isinstance(node, ast.arg) and node.arg == "local"
    ]
    assert flags == [], f"a `local` parameter below the commands (pass a backend name): {flags}"


def test_a_distro_family_is_one_member_and_its_template() -> None:
    listed = [
        f"{where}:{node.lineno}"
        for where, tree in modules()
        if where != "builder/spec.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Distro"
        if node.attr in Distro.__members__
    ]
    assert listed == [], f"a distro family named outside builder/spec.py's Distro: {listed}"
    for family in Distro:
        assert (PACKAGE / "images" / f"{family.value}.Dockerfile.j2").is_file(), family
        assert family.packages and family.os_ids, family
