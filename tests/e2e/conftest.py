"""Fixtures for e2e tests that run servers and guest runners themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.owned_processes import Owned
from tests.integration.server_process import short_tmpdir


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short private directory directly under /tmp (socket paths hold only 107 bytes),
    removed afterwards."""
    with short_tmpdir() as path:
        yield path


@pytest.fixture
def owned() -> Iterator[Owned]:
    """The test's processes, all stopped at the end whatever happens."""
    processes = Owned()
    try:
        yield processes
    finally:
        processes.stop_all()
