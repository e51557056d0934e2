"""The chunk state machine as data (OCSSD 2.0 §2.6, decisions in ocssd-spec §9), in the
style of h11's _state.py: every (event, state) the device accepts has a row with the
state it leads to; a row with no target is a refusal, with its status. A row with a
`requires` lifts its refusal when the device has that capability. Anything not in
the table cannot happen: the checks before it refuse the command.

Events:
- WRITE: a sequential chunk's write at its WP that leaves the WP below CNLB;
- FILL: one that brings the WP to CNLB (the chunk closes);
- RANDOM_WRITE: any write of a random-write (W_RAN) chunk (it never closes);
- CLOSE_EARLY: an injected write failure closes the chunk where the data stopped;
- RESET: a vector reset; RESET_FAILS: an injected reset failure (the chunk goes bad).

chunks.py applies the table; tests/unit/test_chunk_states.py has a test per row.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from ocssd_vfu.spec.ocssd import ChunkState
from ocssd_vfu.spec.status import DNR, Status

# Plain ints: the per-command checks compare these, and IntFlag operators are slow.
FREE, CLOSED, OPEN, OFFLINE = (int(ChunkState.FREE), int(ChunkState.CLOSED),
                               int(ChunkState.OPEN), int(ChunkState.OFFLINE))


class Event(enum.Enum):
    WRITE = enum.auto()
    FILL = enum.auto()
    RANDOM_WRITE = enum.auto()
    CLOSE_EARLY = enum.auto()
    RESET = enum.auto()
    RESET_FAILS = enum.auto()


class Capability(enum.Enum):
    EARLY_RESET = enum.auto()      # MCCAP bit 2 (qemu-nvme's): reset of an OPEN chunk
    MULTIPLE_RESETS = enum.auto()  # MCCAP bit 1: reset of a FREE chunk


class Rule(NamedTuple):
    target: int | None             # the next state; None: refused
    refusal: int = Status.SUCCESS  # the status when refused
    requires: Capability | None = None


OUT_OF_ORDER = Status.OUT_OF_ORDER_WRITE | DNR
INVALID_RESET = Status.INVALID_RESET | DNR

TRANSITIONS: dict[tuple[Event, int], Rule] = {
    (Event.WRITE, FREE): Rule(OPEN),
    (Event.WRITE, OPEN): Rule(OPEN),
    (Event.WRITE, CLOSED): Rule(None, OUT_OF_ORDER),
    (Event.WRITE, OFFLINE): Rule(None, OUT_OF_ORDER),
    (Event.FILL, FREE): Rule(CLOSED),
    (Event.FILL, OPEN): Rule(CLOSED),
    (Event.RANDOM_WRITE, OPEN): Rule(OPEN),
    (Event.RANDOM_WRITE, FREE): Rule(None, OUT_OF_ORDER),
    (Event.RANDOM_WRITE, CLOSED): Rule(None, OUT_OF_ORDER),
    (Event.RANDOM_WRITE, OFFLINE): Rule(None, OUT_OF_ORDER),
    (Event.CLOSE_EARLY, FREE): Rule(CLOSED),
    (Event.CLOSE_EARLY, OPEN): Rule(CLOSED),
    (Event.RESET, CLOSED): Rule(FREE),
    (Event.RESET, OPEN): Rule(FREE, INVALID_RESET, Capability.EARLY_RESET),
    (Event.RESET, FREE): Rule(FREE, INVALID_RESET, Capability.MULTIPLE_RESETS),
    (Event.RESET, OFFLINE): Rule(None, Status.OFFLINE_CHUNK | DNR),
    (Event.RESET_FAILS, FREE): Rule(OFFLINE),
    (Event.RESET_FAILS, OPEN): Rule(OFFLINE),
    (Event.RESET_FAILS, CLOSED): Rule(OFFLINE),
}


def refusal(event: Event, state: int, capabilities: frozenset[Capability]) -> int:
    """The status that refuses `event` in `state` (SUCCESS: it may happen)."""
    rule = TRANSITIONS[(event, state)]
    if rule.requires is not None:
        return Status.SUCCESS if rule.requires in capabilities else rule.refusal
    return rule.refusal if rule.target is None else Status.SUCCESS


def next_state(event: Event, state: int) -> int:
    """The state after `event` in `state`, which `refusal` allowed."""
    target = TRANSITIONS[(event, state)].target
    assert target is not None, (event, state)
    return target
