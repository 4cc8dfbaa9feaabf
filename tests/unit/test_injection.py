"""Generated Dockerfiles cannot be injected into: any option value either is refused or renders
into exactly the expected instructions, with no shell or Dockerfile syntax of its own."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qimg.builder.render import render_dockerfile, render_sshd_config
from qimg.builder.spec import Distro, ImageSpec, check_image_ref
from qimg.errors import UsageError
from tests.unit.test_render import instructions

SYNTAX = "\n\r\t \\\"'$;&|`<>(){}#*?![]=,"
# Mostly-valid values with dangerous characters mixed in, and anything at all.
nasty = st.one_of(
    st.text(),
    st.text(alphabet="abc-_.:/@019" + SYNTAX, max_size=40),
    st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).map(lambda s: s + "\nRUN id"),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    distro=st.sampled_from(Distro),
    base=st.one_of(st.just("debian:bookworm-slim"), nasty),
    user=st.one_of(st.none(), st.just("alice"), nasty),
    packages=st.lists(st.one_of(st.just("less"), nasty), max_size=3),
    root_login=st.sampled_from([None, True, False]),
)
def test_option_values_cannot_inject(
    distro: Distro, base: str, user: str | None, packages: list[str], root_login: bool | None
) -> None:
    try:
        spec = ImageSpec.create(base=base, distro=distro, user=user, packages=packages, root_login=root_login)
    except UsageError:
        return
    for value in (spec.base, spec.user or "", *spec.packages):
        assert not set(value) & set(SYNTAX.replace("=", "")), value
    dockerfile = render_dockerfile(spec)
    steps = instructions(dockerfile)
    assert [step.split()[0] for step in steps] == [
        "FROM",
        "RUN",
        "COPY",
        "COPY",
        "COPY",
        "COPY",
        "RUN",
        "EXPOSE",
        "CMD",
        "LABEL",
    ]
    assert steps[0] == f"FROM {spec.base}"
    assert json.loads(steps[6].removeprefix("RUN "))[1] == spec.login_user
    sshd_lines = [line for line in render_sshd_config(spec).splitlines() if line and not line.startswith("#")]
    assert len(sshd_lines) == 22
    assert [line for line in sshd_lines if line.startswith("AllowUsers")] == [
        "AllowUsers " + " ".join(spec.allowed_users)
    ]


@given(nasty)
def test_image_refs_never_carry_syntax(ref: str) -> None:
    try:
        check_image_ref(ref, "--tag")
    except UsageError:
        return
    assert not set(ref) & set(SYNTAX.replace("[", "").replace("]", "")), ref
