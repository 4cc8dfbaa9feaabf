"""Qarnot's limits on constants, checked before anything is sent: at most 150 constants, keys and
values of at most 2048 characters, keys of `a-z A-Z 0-9 _ - .`, and no `${` (Qarnot substitutes it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qimg.builder.spec import ImageRef
from qimg.errors import UsageError
from qimg.launcher.contract import MAX_LENGTH, Start, check_constants, task_constants
from qimg.launcher.keys.read import LoginKey, public_keys
from qimg.launcher.keys.wire import PublicKey, mpint, string

REF = ImageRef.parse("reg.example.com/team/sim:1", "IMAGE")
PASSWORD = "correct-horse-battery-staple"


def rsa_key(bits: int, comment: str = "me@host") -> PublicKey:
    """An RSA public key of `bits` bits, as the one key reader accepts it."""
    blob = string(b"ssh-rsa") + mpint(65537) + mpint((1 << (bits - 1)) | 1)
    (key,) = public_keys(PublicKey("ssh-rsa", blob, comment).line, "--key k.pub")
    return key


def ed25519_key(comment: str) -> PublicKey:
    return PublicKey("ssh-ed25519", string(b"ssh-ed25519") + string(b"\x01" * 32), comment)


def constants_for(*keys: PublicKey, auth: tuple[str, str] | None = None) -> dict[str, str]:
    return task_constants(REF, LoginKey(keys, Path("k")), Start("/usr/local/sbin/qimg-start"), 60, 1, auth)


def refusal(*keys: PublicKey, auth: tuple[str, str] | None = None) -> str:
    with pytest.raises(UsageError) as refused:
        constants_for(*keys, auth=auth)
    message = str(refused.value)
    assert "\n" not in message  # one line
    return message


def test_an_rsa_16384_key_is_refused_before_sending() -> None:
    key = rsa_key(16384)
    assert len(key.line) > MAX_LENGTH  # about 2.8k characters
    message = refusal(key)
    assert message.startswith(f"DOCKER_SSH would be {len(key.line)} characters")
    assert "limit of 2048" in message and "ed25519" in message and "fewer keys" in message


def test_keys_that_add_up_are_refused() -> None:
    keys = [rsa_key(4096, f"key-{n}@host") for n in range(3)]
    assert all(len(key.line) < MAX_LENGTH for key in keys)
    assert "DOCKER_SSH would be" in refusal(*keys)
    assert "DOCKER_SSH" in constants_for(*keys[:2])  # two fit


def test_a_long_comment_is_refused() -> None:
    assert "shorter key comments" in refusal(ed25519_key("x" * 2000))


def test_a_key_comment_qarnot_would_substitute_is_refused() -> None:
    message = refusal(ed25519_key("me@${HOSTNAME}"))
    assert message.startswith("DOCKER_SSH contains '${'")
    assert "key's comment" in message
    assert constants_for(ed25519_key("me@$HOST {x}"))  # a dollar alone, or a brace alone, is no name


@pytest.mark.parametrize(
    ("auth", "fragment"),
    [
        (("robot", "a" * 3000), "over Qarnot's limit of 2048"),
        (("robot", "pa${ss}" + PASSWORD), "contains '${'"),
        (("r${obot}", PASSWORD), "DOCKER_REGISTRY_LOGIN contains"),
    ],
)
def test_registry_credentials_are_checked_and_never_shown(auth: tuple[str, str], fragment: str) -> None:
    message = refusal(ed25519_key("me"), auth=auth)
    assert fragment in message
    assert auth[1] not in message and PASSWORD not in message


def test_the_limits_themselves() -> None:
    check_constants({"A-b.c_1": "x" * MAX_LENGTH, "K" * MAX_LENGTH: ""})  # at the limits: accepted
    too_many = {f"C{n}": "" for n in range(151)}
    for bad, fragment in [
        (too_many, "151 task constants, over Qarnot's limit of 150"),
        ({"A B": "x"}, "task constant name 'A B'"),
        ({"É": "x"}, "a-z A-Z 0-9 _ - ."),
        ({"K" * (MAX_LENGTH + 1): "x"}, "up to 2048 characters"),
        ({"DOCKER_TAG": "x" * (MAX_LENGTH + 1)}, "DOCKER_TAG would be 2049 characters"),
        ({"DOCKER_CMD": "echo ${INSTANCE_ID}"}, "DOCKER_CMD contains '${'"),
    ]:
        with pytest.raises(UsageError) as refused:
            check_constants(bad)
        assert fragment in str(refused.value)
