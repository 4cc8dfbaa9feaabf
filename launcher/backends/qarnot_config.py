"""Where the Qarnot backend gets its token and cluster from, resolved by qimg so that it says which
values it used: the environment first (QARNOT_CLIENT_TOKEN, QARNOT_CLUSTER_URL, QARNOT_STORAGE_URL),
then, for what is still unset, an INI file (`[client] token=`, `[cluster] url=`, `[storage] url=`)
named by QARNOT_CONFIG_FILE, else ~/.qarnot/qarnot.conf if there is one. A value a user exported for
this shell always wins over a file written long ago.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from qimg.errors import UsageError

if TYPE_CHECKING:
    import configparser

DEFAULT_CLUSTER_URL = "https://api.qarnot.com"
REQUEST_TIMEOUT = 30  # seconds, qimg's bound on every request to the cluster
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


@dataclass(frozen=True)
class QarnotSettings:
    token: str
    cluster_url: str
    storage_url: str | None
    source: str  # where the token came from, for messages
    request_timeout: int = REQUEST_TIMEOUT  # seconds; QARNOT_CLUSTER_TIMEOUT may shorten it

    @property
    def shown_url(self) -> str:
        return redacted(self.cluster_url)

    @property
    def cluster_is_local(self) -> bool:
        """A cluster on this machine or its private network (a test double, a private deployment)."""
        return is_private_host(urlsplit(self.cluster_url).hostname or "")


def redacted(url: str) -> str:
    """The URL without the user:password@ someone may have put in it."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL ([::1 without its bracket): the password goes all the same
        return re.sub(r"(?<=//)[^/]*@", "***@", url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def is_private_host(host: str) -> bool:
    """localhost, or an IP address on loopback, a private or a link-local network."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return _URL.fullmatch(value) is not None and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a bracket left open ([::1:443), a port that is no number
        return False


def _config_file() -> Path | None:
    named = os.environ.get("QARNOT_CONFIG_FILE")
    if named:
        return Path(named)
    default = Path.home() / ".qarnot" / "qarnot.conf"
    return default if default.is_file() else None


def _read(path: Path | None) -> configparser.ConfigParser:
    """The file's settings (none without a file). configparser is imported here, where a launch on
    Qarnot reads them: a local run needs none."""
    import configparser

    parser = configparser.ConfigParser()
    if path is None:
        return parser
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as error:
        raise UsageError(
            f"cannot read the Qarnot config {path} ({error.strerror}): fix QARNOT_CONFIG_FILE, or unset it"
        ) from None
    except (configparser.Error, UnicodeDecodeError) as error:
        reason = error.message if isinstance(error, configparser.Error) else "not UTF-8 text"
        raise UsageError(f"cannot read the Qarnot config {path}: {reason.splitlines()[0]}") from None
    return parser


def settings() -> QarnotSettings:
    """The settings to connect with; refuses, before any request, when there is no token at all."""
    env = os.environ
    path = _config_file()
    parser = _read(path)
    token = env.get("QARNOT_CLIENT_TOKEN") or str(parser.get("client", "token", fallback=""))
    source = "QARNOT_CLIENT_TOKEN" if env.get("QARNOT_CLIENT_TOKEN") else f"the token in {path}"
    if not token.strip():
        raise UsageError(
            "no Qarnot token: set QARNOT_CLIENT_TOKEN (or [client] token= in ~/.qarnot/qarnot.conf), "
            "or run on this machine's Docker engine with --local"
        )
    url = env.get("QARNOT_CLUSTER_URL") or parser.get("cluster", "url", fallback="") or DEFAULT_CLUSTER_URL
    storage = env.get("QARNOT_STORAGE_URL") or parser.get("storage", "url", fallback="") or None
    for name, value in (("cluster", url), ("storage", storage)):
        if value is not None and not _is_url(value):
            raise UsageError(
                f"the Qarnot {name} URL {redacted(value)[:80]!r} is not an http(s) URL: fix "
                f"QARNOT_{name.upper()}_URL or the [{name}] url= of your Qarnot config"
            )
    return QarnotSettings(
        token.strip(), url, storage, source, _request_timeout(env.get("QARNOT_CLUSTER_TIMEOUT"))
    )


def _request_timeout(value: str | None) -> int:
    """QARNOT_CLUSTER_TIMEOUT, which the SDK applies to every request after (and over) the timeout
    qimg passes, and parses with int(): it may shorten qimg's bound, never stretch it. A value outside
    1..REQUEST_TIMEOUT whole seconds is refused here, rather than capped, because the SDK would still
    apply it to the requests it sends while connecting."""
    if value is None:
        return REQUEST_TIMEOUT
    if not re.fullmatch(r"[0-9]{1,6}", value.strip()) or not 1 <= int(value) <= REQUEST_TIMEOUT:
        raise UsageError(
            f"QARNOT_CLUSTER_TIMEOUT={value[:20]!r} is not a whole number of seconds from 1 to "
            f"{REQUEST_TIMEOUT} (qimg's bound on each request): fix it, or unset it"
        )
    return int(value)
