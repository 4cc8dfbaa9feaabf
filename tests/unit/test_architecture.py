"""ARCHITECTURE.md's rooms table is qimg's layering, checked against every import of the package.

The table's rules, as this test reads them:
- Its rows are read from the top: a row may name in "may import" only rows below it (`EXCEPTIONS` lists
  the rows allowed otherwise, with why: none today).
- First column ("room"): one or more paths in backticks outside parentheses, from the repository
  (`src/qimg/cli.py`, `launcher/plan.py`; a folder ends with `/`: `launcher/keys/`); a bare name
  (`render.py`) is in the folder of the path before it in the cell. Every module of the package falls
  in exactly one row: the row naming its file, else the row naming its closest folder. A package's
  `__init__.py` that only marks the package (imports nothing of qimg, defines no function or class)
  needs no row: Python runs it before any module of its package, so it is below everything.
- "may import": the rows named in backticks outside parentheses: `x` is the row of the path ending in
  `x` (`spec`, `backends/base`), `x/` every row with a path in a folder ending in `x/` (`keys/`,
  `builder/`), and the words "every room below" all rows under this one. Anything else is prose: text in
  parentheses (`display/` (`shown`)), third-party libraries written without backticks, "nothing of qimg".
- A module may import its own row and the rows its row names. Imports are read with `ast`: lazy imports
  inside functions count, and so do imports under `if TYPE_CHECKING:` (a type named from a room above is
  the same coupling as a call into it, and hiding it is how a cycle between rooms starts); so does a
  string naming a module, `"qimg.launcher.backends.local:LocalBackend"`, which `importlib` imports.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "qimg"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
SECTION = "## The rooms"
ROOM_COLUMN, MAY_IMPORT_COLUMN = "room", "may import"
EVERY_ROOM_BELOW = "every room below"
# The folders of the repository that are subpackages of qimg (src/qimg/<name> links to them).
LINKED = ("builder", "launcher", "images")

# (a row's first path, the first path of a row above it that it names), as the table writes them: why
# that upward import is allowed.
EXCEPTIONS: dict[tuple[str, str], str] = {}

MODULE_STRING = re.compile(r"qimg(?:\.\w+)+(?::\w+)?")


@dataclass(frozen=True)
class Row:
    index: int
    line: int  # in ARCHITECTURE.md, for the messages
    paths: tuple[str, ...]  # relative to the package: "cli.py", "commands/", "launcher/plan.py"
    may_import: str

    @property
    def name(self) -> str:
        return f"`{shown_path(self.paths[0])}` (line {self.line})"


def package_path(written: str) -> str:
    """A path as the table writes it (from the repository), relative to the package."""
    return written.strip().removeprefix("src/qimg/")


def without_parentheses(text: str) -> str:
    """`text` without what it says in parentheses (comments, nested ones too)."""
    while re.search(r"\([^()]*\)", text):
        text = re.sub(r"\([^()]*\)", "", text)
    return text


def split_cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def read_rows() -> list[Row]:
    lines = ARCHITECTURE.read_text(encoding="utf-8").splitlines()
    start = lines.index(SECTION)
    first = next((n for n in range(start, len(lines)) if lines[n].lstrip().startswith("|")), None)
    assert first is not None, f"ARCHITECTURE.md: no table under {SECTION!r}"
    header = [cell.lower() for cell in split_cells(lines[first])]
    assert ROOM_COLUMN in header and MAY_IMPORT_COLUMN in header, (
        f"ARCHITECTURE.md line {first + 1}: the rooms table needs the columns "
        f"{ROOM_COLUMN!r} and {MAY_IMPORT_COLUMN!r}, it has {header}"
    )
    room, may_import = header.index(ROOM_COLUMN), header.index(MAY_IMPORT_COLUMN)
    rows: list[Row] = []
    n = first + 2  # after the header and its --- line
    while n < len(lines) and lines[n].lstrip().startswith("|"):
        cells = split_cells(lines[n])
        assert len(cells) == len(header), (
            f"ARCHITECTURE.md line {n + 1}: {len(cells)} cells, the header has {len(header)}"
        )
        paths: list[str] = []
        for written in re.findall(r"`([^`]+)`", without_parentheses(cells[room])):
            path = package_path(written)
            if "/" not in written and paths:  # `render.py` after `builder/distro.py`: in its folder
                path = paths[-1].rpartition("/")[0] + "/" + path if "/" in paths[-1] else path
            paths.append(path)
        assert paths, f"ARCHITECTURE.md line {n + 1}: the first column names no room in backticks"
        rows.append(Row(len(rows), n + 1, tuple(paths), cells[may_import]))
        n += 1
    return rows


def package_modules() -> dict[str, str]:
    """Every module of qimg (walking src/qimg through its links): dotted name -> path in the package."""
    modules: dict[str, str] = {}
    for folder, _, files in os.walk(PACKAGE, followlinks=True):
        for file in files:
            if file.endswith(".py"):
                path = (Path(folder) / file).relative_to(PACKAGE).as_posix()
                dotted = ".".join(["qimg", *path.removesuffix(".py").split("/")])
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def imported(dotted: str, path: str, modules: dict[str, str]) -> set[str]:
    """The qimg modules a module imports, wherever the import is (functions, TYPE_CHECKING blocks)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
    found: set[str | None] = set()
    tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(known(alias.name) for alias in node.names if alias.name.split(".")[0] == "qimg")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base.split(".")[0] == "qimg":
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    found.add(submodule if submodule in modules else known(base))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MODULE_STRING.fullmatch(node.value)
        ):
            found.add(known(node.value.partition(":")[0]))
    return {name for name in found if name is not None and name != dotted}


@dataclass(frozen=True)
class Layout:
    rows: list[Row]
    modules: dict[str, str]  # dotted -> path
    row_of: dict[str, Row]  # dotted -> its row (markers: none)
    imports: dict[str, set[str]]  # dotted -> qimg modules it imports
    problems: list[str]


def rows_holding(path: str, rows: list[Row]) -> list[Row]:
    """The rows that hold `path` most closely: the rows naming its file, else its closest folder."""
    by_file = [row for row in rows if path in row.paths]
    if by_file:
        return by_file
    folders = [(len(p), row) for row in rows for p in row.paths if p.endswith("/") and path.startswith(p)]
    closest = max((length for length, _ in folders), default=0)
    return [row for length, row in folders if length == closest]


def layout() -> Layout:
    rows = read_rows()
    modules = package_modules()
    imports = {dotted: imported(dotted, path, modules) for dotted, path in modules.items()}
    problems: list[str] = []
    row_of: dict[str, Row] = {}
    for dotted, path in sorted(modules.items(), key=lambda item: item[1]):
        holders = rows_holding(path, rows)
        if len(holders) > 1:
            rooms = ", ".join(row.name for row in holders)
            problems.append(f"{shown_path(path)} is in several rows: {rooms}")
        elif holders:
            row_of[dotted] = holders[0]
        elif not is_marker(path, imports[dotted]):
            problems.append(
                f"{shown_path(path)} ({dotted}) is in no row of ARCHITECTURE.md's rooms table: add a row "
                f"naming `{shown_path(path)}` (or its folder), below every room importing it and above "
                "every room it imports"
            )
    existing = set(modules.values())
    for row in rows:
        for path in row.paths:
            if not any(p == path or (path.endswith("/") and p.startswith(path)) for p in existing):
                problems.append(
                    f"row {row.name} names `{shown_path(path)}`, which is no module or folder of qimg"
                )
    return Layout(rows, modules, row_of, imports, problems)


def is_marker(path: str, imports: set[str]) -> bool:
    """Whether `path` only marks a package: an `__init__.py` importing nothing of qimg and holding no
    function or class (a docstring, `__version__`), which needs no row."""
    if not path.endswith("__init__.py") or imports:
        return False
    tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"), filename=path)
    return all(
        isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign, ast.ImportFrom, ast.Import))
        for node in tree.body
    )


def shown_path(path: str) -> str:
    """A path in the package as the table writes it (from the repository)."""
    return path if path.split("/", maxsplit=1)[0] in LINKED else f"src/qimg/{path}"


def in_folder(path: str, folder: str) -> bool:
    """Whether `path` is in a folder whose path ends in `folder` (`keys/` holds `launcher/keys/read.py`)."""
    return any(
        (outer := path[: n + 1]) == folder or outer.endswith("/" + folder)
        for n, character in enumerate(path)
        if character == "/"
    )


def named_rows(row: Row, rows: list[Row]) -> tuple[dict[str, list[Row]], list[str]]:
    """The rooms `row` may import, by the name it writes them with, and the problems in its names."""
    prose = without_parentheses(row.may_import)
    named: dict[str, list[Row]] = {}
    problems: list[str] = []
    for written in re.findall(r"`([^`]+)`", prose):
        reference = package_path(written)
        if reference.endswith("/"):
            found = [r for r in rows if any(in_folder(p, reference) for p in r.paths)]
        else:
            key = reference.removesuffix(".py")
            found = [
                r
                for r in rows
                if any(
                    (bare := p.rstrip("/").removesuffix(".py")) == key or bare.endswith("/" + key)
                    for p in r.paths
                )
            ]
        if not found:
            problems.append(f"row {row.name} may import `{written}`, which names no row of the table")
        elif len(found) > 1 and not reference.endswith("/"):
            rooms = ", ".join(r.name for r in found)
            problems.append(
                f"row {row.name} may import `{written}`, which names several rows: {rooms} (write more "
                "of its path, `launcher/account` rather than `account`)"
            )
        else:
            named[written] = found
    if EVERY_ROOM_BELOW in prose.lower():
        named[EVERY_ROOM_BELOW] = rows[row.index + 1 :]
    return named, problems


def reference_to(path: str, row: Row, rows: list[Row]) -> str:
    """The shortest name under 'may import' that names `row`, by its path that holds `path`."""
    held = path if path in row.paths else max((p for p in row.paths if path.startswith(p)), key=len)
    parts = held.rstrip("/").removesuffix(".py").split("/")
    folder = "/" if held.endswith("/") else ""
    for count in range(1, len(parts) + 1):
        written = "/".join(parts[-count:]) + folder
        probe = Row(-1, 0, (), f"`{written}`")
        named, wrong = named_rows(probe, rows)
        if not wrong and [r.index for r in named[written]] == [row.index]:
            return written
    return shown_path(held)


def test_every_module_is_in_one_row() -> None:
    problems = layout().problems
    assert not problems, "ARCHITECTURE.md's rooms table and the package differ:\n" + "\n".join(problems)


def test_rows_name_only_rows_below_them() -> None:
    rows = read_rows()
    problems: list[str] = []
    for row in rows:
        named, wrong = named_rows(row, rows)
        problems += wrong
        for written, targets in named.items():
            for target in targets:
                upward = target.index <= row.index and target is not row
                if upward and (shown_path(row.paths[0]), shown_path(target.paths[0])) not in EXCEPTIONS:
                    problems.append(
                        f"row {row.name} may import `{written}`, the row {target.name} above it: "
                        "the table is the layering, a room imports only rooms below it"
                    )
    stale = [key for key in EXCEPTIONS if not any(shown_path(row.paths[0]) == key[0] for row in rows)]
    problems += [f"EXCEPTIONS names {key}, and the table has no such row" for key in stale]
    assert not problems, "ARCHITECTURE.md's rooms table breaks its own layering:\n" + "\n".join(problems)


def test_every_import_is_allowed_by_its_row() -> None:
    found = layout()
    problems: list[str] = []
    for dotted, targets in sorted(found.imports.items(), key=lambda item: found.modules[item[0]]):
        row = found.row_of.get(dotted)
        if row is None:
            continue  # in no row: test_every_module_is_in_one_row says so
        allowed = {r.index for rows in named_rows(row, found.rows)[0].values() for r in rows}
        for target in sorted(targets):
            target_row = found.row_of.get(target)
            if target_row is None or target_row is row or target_row.index in allowed:
                continue  # a package marker, its own room, or a room it may import
            problems.append(
                f"{shown_path(found.modules[dotted])} imports {target}, of the row {target_row.name}, "
                f"which its row {row.name} does not list under 'may import' (list "
                f"`{reference_to(found.modules[target], target_row, found.rows)}` there if that row is "
                "below it; else the import goes up the layering)"
            )
    assert not problems, "imports that ARCHITECTURE.md's rooms table does not allow:\n" + "\n".join(problems)


def test_every_room_named_is_imported() -> None:
    """The table says what the code does: a room listed under 'may import' and imported by no module of
    the row is stale (the words "every room below" excepted)."""
    found = layout()
    problems: list[str] = []
    for row in found.rows:
        members = [dotted for dotted, r in found.row_of.items() if r is row]
        used = {found.row_of[t].index for m in members for t in found.imports[m] if t in found.row_of}
        for written, targets in named_rows(row, found.rows)[0].items():
            if written != EVERY_ROOM_BELOW and not used & {t.index for t in targets}:
                problems.append(f"row {row.name} may import `{written}`, and none of its modules imports it")
    assert not problems, "ARCHITECTURE.md's rooms table lists imports the code lacks:\n" + "\n".join(problems)
