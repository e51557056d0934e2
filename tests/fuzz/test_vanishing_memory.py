"""Fuzz: guest memory that shrinks and an image that is truncated under the controller
(tests/fuzz/vanishing.py says which properties hold after every command). A short run:
`make fuzz` runs the long campaign."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.vanishing import run_vanishing


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.randoms(use_true_random=False))
def test_memory_and_image_vanishing_fail_commands_only(tmp_path: Path,
                                                       rng: random.Random) -> None:
    run_vanishing(rng, tmp_path)
