"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from tests.unit.fakehost import FakeHost


@pytest.fixture(params=["fast path", "python path"])
def both_io_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test once with plain Reads and Writes on the C fast path and once on the
    Python path: the two implementations must give the same results."""
    fast = request.param == "fast path"
    monkeypatch.setattr(FakeHost, "fast_path", fast)
    return fast
