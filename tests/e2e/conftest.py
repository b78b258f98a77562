"""Fixtures shared by the end-to-end suites (engine and Compose)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.registry import RegistryProcess, start_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """A real `docker-registry` on loopback, one per module, stopped at its end."""
    process = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield process
    finally:
        process.stop()
