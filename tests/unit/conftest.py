"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from tests.unit.fakehost import FakeHost


@pytest.fixture(params=["C doorbells", "fast path", "python path"])
def both_io_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with I/O doorbells taken in C (which runs the fast path at once), with
    the fast path run from process() only, and on the Python path: the implementations
    must give the same results."""
    fast = request.param != "python path"
    monkeypatch.setattr(FakeHost, "fast_path", fast)
    monkeypatch.setattr(FakeHost, "native_doorbells", request.param == "C doorbells")
    return fast
