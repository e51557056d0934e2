"""Fixtures: a shared server per module, a negotiated client per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.server_process import ServerProcess, running_server
from tests.vfio_user_client import VfioUserClient


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ServerProcess]:
    """One server (without --once) for a whole module: every test connects anew."""
    with running_server() as server:
        yield server
        print(f"--- server log ---\n{server.log()}")  # shown if the teardown fails


@pytest.fixture
def server(shared_server: ServerProcess) -> Iterator[ServerProcess]:
    shared_server.assert_alive()
    start = shared_server.log_size()
    yield shared_server
    # Shown by pytest only when the test fails.
    print(f"--- server log during this test ---\n{shared_server.log(start)}")


@pytest.fixture
def client(server: ServerProcess) -> Iterator[VfioUserClient]:
    """A connection that went through VERSION negotiation."""
    c = server.connect()
    try:
        yield c
    finally:
        c.close()
