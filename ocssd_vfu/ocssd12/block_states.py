"""What a 1.2 block's bad-block value allows, as data (h11 _state.py style): each
(event, value) row gives the value the block has afterwards, or None where the
event fails on it (the command reports a write failure for that PPA).

Events: PROGRAM a page, ERASE the block, ERASE_FAILS (an injected erase failure,
or the erase after an injected program failure: the block is retired as grown
bad). Factory and grown bad blocks take neither programs nor erases; reserved
blocks (device, host) work, the host keeps away from them itself.

blocks.py and namespace.py apply it; tests/unit/test_block_states.py has a test
per row.
"""

from __future__ import annotations

import enum
from functools import reduce

from ocssd_vfu.spec.ocssd12 import BlockValue

GOOD, FACTORY, GROWN, DEVICE, HOST = (int(BlockValue.GOOD), int(BlockValue.FACTORY),
                                      int(BlockValue.GROWN), int(BlockValue.DEVICE),
                                      int(BlockValue.HOST))


class BlockEvent(enum.Enum):
    PROGRAM = enum.auto()
    ERASE = enum.auto()
    ERASE_FAILS = enum.auto()


BLOCK_TRANSITIONS: dict[tuple[BlockEvent, int], int | None] = {
    (BlockEvent.PROGRAM, GOOD): GOOD,
    (BlockEvent.PROGRAM, DEVICE): DEVICE,
    (BlockEvent.PROGRAM, HOST): HOST,
    (BlockEvent.PROGRAM, FACTORY): None,
    (BlockEvent.PROGRAM, GROWN): None,
    (BlockEvent.ERASE, GOOD): GOOD,
    (BlockEvent.ERASE, DEVICE): DEVICE,
    (BlockEvent.ERASE, HOST): HOST,
    (BlockEvent.ERASE, FACTORY): None,
    (BlockEvent.ERASE, GROWN): None,
    (BlockEvent.ERASE_FAILS, GOOD): GROWN,
    (BlockEvent.ERASE_FAILS, DEVICE): GROWN,
    (BlockEvent.ERASE_FAILS, HOST): GROWN,
}

# The value bits that refuse programs (and erases): a stored value with any of them is
# unusable, whatever else it holds (a hand-made table may combine bits).
UNUSABLE = reduce(int.__or__, (value for (event, value), after in BLOCK_TRANSITIONS.items()
                               if event is BlockEvent.PROGRAM and after is None))


def after_failed_erase(value: int) -> int:
    """The value a block gets when its erase fails."""
    return BLOCK_TRANSITIONS.get((BlockEvent.ERASE_FAILS, value)) or GROWN
