"""Dockerfiles from the templates in qimg.images: one base template, one small block per distro family.

The templates decide nothing: everything that varies (packages, the set-up command, labels) is
computed here from a checked `ImageSpec`, so the templates stay readable as Dockerfiles.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache
from importlib.resources import files
from pathlib import Path

import jinja2

from qimg import __version__
from qimg.builder import labels
from qimg.builder.spec import ImageSpec
from qimg.errors import FileError

# Scripts copied into the build context as they are (mode 0755); the Dockerfile installs them.
_SCRIPTS = ("qimg-setup.sh", "qimg-start.sh", "qimg-idle.sh")
_SSHD_CONFIG = "sshd-qimg.conf"


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(files("qimg.images"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles, not HTML; every value is checked by ImageSpec
    )


def packages(spec: ImageSpec) -> tuple[str, ...]:
    """Packages to install, in a stable order (so the install layer is cached across users)."""
    wanted = [*spec.distro.packages, *(("sudo",) if spec.sudo else ()), *spec.packages]
    return tuple(dict.fromkeys(wanted))


def setup_argv(spec: ImageSpec) -> list[str]:
    argv = ["/usr/local/sbin/qimg-setup", spec.login_user]
    if spec.user:
        argv += [str(spec.uid), str(spec.gid), *(["sudo"] if spec.sudo else [])]
    return argv


def render_dockerfile(spec: ImageSpec) -> str:
    text = (
        _templates()
        .get_template(f"{spec.distro.value}.Dockerfile.j2")
        .render(
            version=__version__,
            base=spec.base,
            spec=spec,
            packages=packages(spec),
            setup_argv=setup_argv(spec),
            labels=labels.write(spec),
        )
    )
    return text + (f"\n{spec.extra.dockerfile}" if spec.extra else "")


def render_sshd_config(spec: ImageSpec) -> str:
    return _templates().get_template(f"{_SSHD_CONFIG}.j2").render(spec=spec)


def context_files(spec: ImageSpec) -> dict[str, tuple[bytes, int]]:
    """Every file of the build context of `spec`, by name: its bytes and its mode (fixed, so that identical
    specs give identical, cached, layers whatever the umask)."""
    found = {
        "Dockerfile": (render_dockerfile(spec).encode(), 0o644),
        _SSHD_CONFIG: (render_sshd_config(spec).encode(), 0o644),
    }
    for script in _SCRIPTS:
        found[script] = (files("qimg.images").joinpath(script).read_bytes(), 0o755)
    for name, data, mode in spec.extra.files if spec.extra else ():
        found[name] = (data, mode)
    return found


def write_context(spec: ImageSpec, directory: Path) -> None:
    """The build context of `spec` (the Dockerfile and every file it copies) written into `directory`,
    which must be absent (it is made, with its missing parents) or an empty folder: a user's files are
    never written over. Each file is created exclusively (a file appearing meanwhile is not replaced,
    nor a link followed), and a failure removes what this call made. FileError says what went wrong."""
    contents = context_files(spec)  # rendered before anything is written
    try:
        present = [entry.name for entry in os.scandir(directory)]
    except FileNotFoundError:
        present = []
    except NotADirectoryError:
        blocker = next(
            (p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), directory
        )
        what = "it is" if blocker == directory else f"{blocker} is"
        raise FileError(
            f"cannot write a build context into {directory}: {what} a file, not a folder",
            hint="name a new or empty folder",
        ) from None
    except OSError as error:
        raise FileError.of("read the folder", directory, error) from None
    if present:
        shown = ", ".join(sorted(present)[:3]) + (", ..." if len(present) > 3 else "")
        raise FileError(
            f"cannot write a build context into {directory}: it is not empty ({shown})",
            hint="qimg never writes over files: name a new or empty folder",
        )
    made = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    written: list[Path] = []
    path = directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, (data, mode) in contents.items():
            path = directory / name
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            written.append(path)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            os.chmod(path, mode)  # whatever the umask
    except OSError as error:
        for done in written:
            with contextlib.suppress(OSError):
                done.unlink()
        for folder in made:  # the deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise FileError.of("write", Path(error.filename) if error.filename else path, error) from None
