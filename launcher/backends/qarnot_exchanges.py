"""The HTTP exchanges of the Qarnot backend, seen without the SDK's private session.

The SDK sends through a requests session it keeps to itself, and boto3's S3 client through botocore:
both end in urllib3, whose logger `urllib3.connectionpool` reports every response at DEBUG level,
with the scheme, host, port, method, path, HTTP version and status as the record's arguments. One
filter of that logger, installed once, gives each open backend the responses from its own hosts (cluster and
storage): it counts them (the request budget covers bucket calls too) and keeps, per thread, the
status of the last one (what a refused creation or a 503 read was, which the SDK's exceptions do not
say). The records it opens to DEBUG go no further than the filter: no handler, a user's included,
gets more than before. The shape of those records is checked by tests/unit/test_sdk_contract.py.
"""

from __future__ import annotations

import logging
import threading
import weakref
from urllib.parse import urlsplit

URLLIB3_LOGGER = "urllib3.connectionpool"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint(url: str) -> tuple[str, int] | None:
    """(host, port) of a URL, as urllib3 names the pool that serves it."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return None
    return parts.hostname.lower(), port


class Exchanges:
    """Responses from a set of endpoints: how many, and per thread the status of the last one."""

    def __init__(self, *urls: str | None) -> None:
        self._lock = threading.Lock()
        self._endpoints: set[tuple[str, int]] = set()
        self.count = 0
        self._last: dict[int, int] = {}
        self._worst: dict[int, int] = {}  # the highest status since forget_last, per thread
        self.watch(*urls)
        _Observer.install().add(self)

    def watch(self, *urls: str | None) -> None:
        with self._lock:
            self._endpoints.update(found for url in urls if url and (found := endpoint(url)))

    def seen(self, host: str, port: int, status: int) -> None:
        with self._lock:
            if (host.lower(), port) in self._endpoints:
                self.count += 1
                thread = threading.get_ident()
                self._last[thread] = status
                self._worst[thread] = max(status, self._worst.get(thread, 0))

    def forget_last(self) -> None:
        """Before a request whose outcome is read with `last_status`."""
        with self._lock:
            self._last.pop(threading.get_ident(), None)
            self._worst.pop(threading.get_ident(), None)

    def worst_status(self) -> int | None:
        """The highest status this thread received since `forget_last` (None: no response)."""
        with self._lock:
            return self._worst.get(threading.get_ident())

    def last_status(self) -> int | None:
        """The status of the last response this thread received since `forget_last` (None: none came,
        the request timed out or its connection was dropped)."""
        with self._lock:
            return self._last.get(threading.get_ident())


class _Observer(logging.Filter):
    """A filter of urllib3's logger rather than a handler: it sees each record first, and lets on only
    what the logger let on before it was opened to DEBUG, so that no handler (a user's root handler
    included, which propagation would reach) receives a record it did not receive before."""

    _installed: _Observer | None = None
    _install_lock = threading.Lock()

    def __init__(self, passes_from: int) -> None:
        super().__init__()
        self._passes_from = passes_from
        self._lock = threading.Lock()  # records come from any thread, backends open in any thread
        self._exchanges: weakref.WeakSet[Exchanges] = weakref.WeakSet()

    @classmethod
    def install(cls) -> _Observer:
        with cls._install_lock:
            if cls._installed is None:
                logger = logging.getLogger(URLLIB3_LOGGER)
                cls._installed = cls(logger.getEffectiveLevel())
                logger.addFilter(cls._installed)
                logger.setLevel(min(logger.getEffectiveLevel(), logging.DEBUG))
            return cls._installed

    def add(self, exchanges: Exchanges) -> None:
        with self._lock:
            self._exchanges.add(exchanges)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 8:  # else another message (a new connection, a retry)
            host, port, status = args[1], args[2], args[6]
            if isinstance(host, str) and isinstance(port, int) and isinstance(status, int):
                with self._lock:
                    watching = list(self._exchanges)
                for exchanges in watching:
                    exchanges.seen(host, port, status)
        return record.levelno >= self._passes_from
