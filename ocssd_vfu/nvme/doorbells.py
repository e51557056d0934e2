"""Shadow doorbells and EventIdx (Doorbell Buffer Config, admin 7Ch; OACS bit 8).

The host gives two pages: the shadow doorbell buffer, where it writes every SQ
tail and CQ head as it would to the MMIO doorbells, and the EventIdx buffer,
where the controller says when it wants an MMIO write. Both have the BAR
doorbells' layout: the SQ y tail at 8*y, the CQ y head at 8*y + 4 (DSTRD 0).
The host rings the MMIO doorbell only when the EventIdx lies in [old, new) of
the value it moved (modulo 2^16, Linux's nvme_dbbuf_need_event).

Rules here:
- Only I/O queues use them (Linux never points the admin queue there): the
  admin queue stays on MMIO doorbells. MMIO doorbell writes stay valid input.
- 7Ch: PRP1 (shadow) and PRP2 (EventIdx) non-zero and memory-page aligned, else
  Invalid Field; both pages mapped writable, else Data Transfer Error. The
  controller's current tails/heads are copied into the shadow page (a host may
  configure after creating queues).
- A queue created while configured gets shadow 0 and EventIdx 0 (the host's own
  tail/head is 0 then, and the page may hold a deleted queue's values).
- Processing reads every I/O SQ's shadow tail and CQ's shadow head. Then it arms
  each SQ's EventIdx at the tail it consumed (the next submission rings) and each
  CQ's at "never" (0xFFFFFFFF, still an MMIO at every wrap) unless one of its SQs
  waits for room, then at the head it last read. After that a barrier, and a new
  read of the shadow values: a host that wrote between our read and our EventIdx
  saw the old EventIdx and may have skipped the MMIO (the re-arm race), so a
  moved value means processing again.
- While the server polls (serve --poll), EventIdx is kept where the host does not
  ring instead, and the arming above comes when polling stops: polling.py.
- A controller reset (CC.EN 1->0) forgets the configuration. Before forgetting,
  it zeroes the shadow value and EventIdx of every queue it ever wrote there (deleted
  queues too: the host may re-create them in the same slots): Linux 5.10.223 re-attaches
  the old pages to the new queues and starts I/O before it sends 7Ch again
  (neither the upstream fix that sends 7Ch before unquiescing nor the one that
  clears the pages on reset is in it). Zeroed, the host's first doorbell update
  and every wrap ring the MMIO doorbell the reset controller listens to. A whole
  device reset (guest reboot, FLR) writes nothing: the memory may be another's by then.

The pages are here; admin.py has the 7Ch command and the queue creation rule,
controller.py the reads, re-arming and reset. The C doorbell path
(native/doorbell.c, native_doorbells.py) keeps the same rules for the queue pairs
it serves: a doorbell write runs the SQ after reading its shadow tail and its CQ's
shadow head; at the end of the wake-up (Controller.after_wake_up, as Python's
processing would come then) each SQ's shadow values are read again and run, its
EventIdx armed at the tail and its CQ's at "never" (the CQ is that SQ's alone),
then a barrier and the re-read of the shadow tail. An invalid shadow value, or an
SQ it cannot empty, goes to Python's processing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocssd_vfu.dma.memory import GuestMemory

EVENTIDX_NEVER = 0xFFFFFFFF


@dataclass
class ShadowDoorbells:
    shadow: int     # guest address of the shadow doorbell page
    eventidx: int   # guest address of the EventIdx page
    size: int       # bytes of each page in use
    _views: tuple[memoryview, memoryview] | None = field(default=None, repr=False)
    _generation: int = -1
    used: set[tuple[int, bool]] = field(default_factory=set)  # (qid, cq) ever written


    def pages(self, memory: GuestMemory) -> tuple[memoryview, memoryview]:
        """Both pages as dwords (the host reads each value with one load, so each is
        stored with one store: struct.pack_into would zero it first), resolved again
        after any change of the memory map (DmaError)."""
        if self._views is None or self._generation != memory.generation:
            self._views = (memory.view(self.shadow, self.size, write=True).cast("I"),
                           memory.view(self.eventidx, self.size, write=True).cast("I"))
            self._generation = memory.generation
        return self._views

    def read(self, memory: GuestMemory, qid: int, cq: bool) -> int:
        value: int = self.pages(memory)[0][2 * qid + cq]
        return value

    def write(self, memory: GuestMemory, qid: int, cq: bool, value: int) -> None:
        self.pages(memory)[0][2 * qid + cq] = value
        self.used.add((qid, cq))

    def arm(self, memory: GuestMemory, qid: int, cq: bool, value: int) -> None:
        self.pages(memory)[1][2 * qid + cq] = value
        self.used.add((qid, cq))
