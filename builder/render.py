"""Dockerfiles from the templates in qimg.images: one base template, one small block per distro family.

The templates decide nothing: everything that varies (packages, the set-up command, labels) is
computed here from a checked `ImageSpec`, so the templates stay readable as Dockerfiles.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from importlib.resources import files
from pathlib import Path

import jinja2

from qimg import __version__
from qimg.builder import labels
from qimg.builder.spec import ImageSpec

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
    return (
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


def render_sshd_config(spec: ImageSpec) -> str:
    return _templates().get_template(f"{_SSHD_CONFIG}.j2").render(spec=spec)


def write_context(spec: ImageSpec, directory: Path) -> None:
    """A build context with fixed modes, so identical specs give identical (cached) layers."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(render_dockerfile(spec))
    (directory / _SSHD_CONFIG).write_text(render_sshd_config(spec))
    os.chmod(directory / _SSHD_CONFIG, 0o644)
    for script in _SCRIPTS:
        with (
            files("qimg.images").joinpath(script).open("rb") as source,
            (directory / script).open("wb") as out,
        ):
            shutil.copyfileobj(source, out)
        os.chmod(directory / script, 0o755)
