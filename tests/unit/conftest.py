"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qimg.launcher.backends import registry
from tests.backends import memory as memory_backend


@pytest.fixture
def memory() -> Iterator[memory_backend.Service]:
    """The memory backend, registered by name as the real backends are (one line), over a fresh
    service; unregistered afterwards."""
    registry.register("memory", "tests.backends.memory:MemoryBackend", "the memory backend", "--memory")
    memory_backend.SERVICE.reset()
    try:
        yield memory_backend.SERVICE
    finally:
        registry.REGISTERED.pop("memory", None)
        memory_backend.SERVICE.reset()
