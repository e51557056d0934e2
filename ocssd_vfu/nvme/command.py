"""A submission queue entry (decoded on the hot path with struct, see spec.nvme)
and what its handler returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ocssd_vfu.spec.status import DNR, Status


class Command(NamedTuple):
    opc: int
    flags: int
    cid: int
    nsid: int
    cdw2: int
    cdw3: int
    mptr: int
    prp1: int
    prp2: int
    cdw10: int
    cdw11: int
    cdw12: int
    cdw13: int
    cdw14: int
    cdw15: int


# CDW0 flag fields: FUSE (1:0, no fused commands here) and PSDT (7:6, dptr.py).
FUSE = 0x03
PSDT = 0xC0

# What a handler returns: (status, 64-bit command-specific result for CQE DW0-DW1).
Result = tuple[int, int]
OK: Result = (Status.SUCCESS, 0)
# A handler's status meaning "completes later" (Controller.complete_deferred): a
# sentinel, not an exception or a callback, so deferred work (Flush, AER) stays a
# value the controller hands to the shell as a SyncRequest.
DEFERRED = -1


def fail_no_retry(status: int) -> Result:
    """An error completion with Do Not Retry set: the host should not retry it."""
    return (status | DNR, 0)


@dataclass(frozen=True)
class SyncRequest:
    """The shell must make the image durable, then call `complete_deferred`.

    `epoch` is the controller's reset count when the request was made: a reset
    in between aborts the command, so its late completion is dropped.
    """

    epoch: int
    sqid: int = 0
    cid: int = 0
    shutdown: bool = False


# The controller calls its tracer (trace.py, tests) after each command it ran:
# (queue id, command, status, result).
Tracer = Callable[[int, Command, int, int], None]
