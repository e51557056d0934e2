"""A short fuzz campaign in the test suite (`make fuzz` runs the long one): hypothesis
draws the random driver's seed, each example runs a fresh controller through a few
dozen actions, and every property of harness.py is checked after every command."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.actions import step
from tests.fuzz.harness import FuzzFailure, Target
from tests.fuzz.model import lba


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(min_value=50, max_value=400))
def test_random_actions_keep_every_property(rng: random.Random, steps: int) -> None:
    with Target(random.Random(rng.getrandbits(64))) as target:
        try:
            for _ in range(steps):
                step(target)
            target.check_data()
        except FuzzFailure as exc:
            raise FuzzFailure(f"{exc}\nlast actions:\n  " + "\n  ".join(target.log[-12:])
                              ) from None


def test_the_harness_catches_a_device_that_disagrees_with_the_model() -> None:
    """The properties can fail: a chunk table changed behind the model's back is found
    at the next command."""
    with Target(random.Random(1)) as target:
        target.submit(1, opc=0x92, nsid=1, cdw10=lba(0, 0, 0))  # a read: nothing changes
        target.chunk_log.view[0] = 0x04  # chunk 0 OPEN, as no command made it
        try:
            target.submit(1, opc=0x92, nsid=1, cdw10=lba(0, 0, 0))
        except FuzzFailure as exc:
            assert "chunk table differs from the model" in str(exc)
        else:
            raise AssertionError("the harness did not notice")

