"""Which distro family a base image is, from its /etc/os-release."""

from __future__ import annotations

from qimg.builder.distro import family_of, parse_os_release
from qimg.builder.spec import Distro


def test_os_release_families() -> None:
    ubuntu = parse_os_release('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n')
    assert family_of(ubuntu) is Distro.DEBIAN
    assert family_of(parse_os_release('ID="rocky"\nID_LIKE="rhel centos fedora"')) is Distro.RHEL
    assert family_of(parse_os_release("ID=almalinux")) is Distro.RHEL
    assert family_of(parse_os_release("ID=alpine")) is Distro.ALPINE
    assert family_of(parse_os_release('ID=opensuse-leap\nID_LIKE="suse opensuse"')) is None
