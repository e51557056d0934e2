"""A namespace over one FTL: what the NVMe core sees of it.

Identify Namespace: NSZE = NCAP = the FTL's logical blocks, NUSE = the blocks mapped
now, one LBA format of 4096 bytes without metadata, no LightNVM vendor byte (so
Linux's lightnvm does not bind), DLFEAT: deallocated blocks read zeroes and Write
Zeroes deallocates. There is no DULBE: the FTL reads unmapped blocks as zeroes.

Each host command's media operations are kept (`media_ops`, cleared when the next
command starts) for `--trace`; with --timing, `timing` (ftlns/timed.py) charges them
flash time, and the work outside host commands (Flush padding, background GC) too.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from ocssd_vfu.ftl.core import Ftl
from ocssd_vfu.ftl.stream import NoSpace
from ocssd_vfu.ftl.trace import MediaOp
from ocssd_vfu.ftlns.timed import FtlTiming
from ocssd_vfu.nvme.kind import NamespaceKind
from ocssd_vfu.spec.nvme import Dlfeat, IdentifyNamespace, Nsfeat, blank

FTL_LBA_SIZE = 4096

log = logging.getLogger("ocssd_vfu.ftl")


class FtlNamespace:
    kind: ClassVar[NamespaceKind]  # its command table: commands.py registers it
    lba_size = FTL_LBA_SIZE
    supports_dulbe = False

    def __init__(self, nsid: int, ftl: Ftl, timing: FtlTiming | None = None) -> None:
        self.nsid = nsid
        self.ftl = ftl
        self.nlbas = ftl.logical_blocks
        self.media_ops: list[MediaOp] = []
        ftl.trace = self.media_ops
        self.timing = timing   # the core then holds completions and waits for it at Flush

    def identify(self) -> bytes:
        ident = blank(IdentifyNamespace)
        ident.update(dict(
            nsze=self.nlbas, ncap=self.nlbas, nuse=self.ftl.mapping.mapped,
            nsfeat=Nsfeat.THIN_PROVISIONING, nlbaf=0, flbas=0,
            dlfeat=Dlfeat.READS_ZEROES | Dlfeat.WRITE_ZEROES_DEALLOCATES,
            nvmcap=(self.nlbas * FTL_LBA_SIZE).to_bytes(16, "little")))
        ident.lbaf[0].lbads = FTL_LBA_SIZE.bit_length() - 1
        return IdentifyNamespace.build(ident)

    def flush_write_cache(self) -> None:
        """Program the write buffer's partial units (padded): Flush, CC.SHN, reset. Worn-out
        media leaves them staged (durable all the same)."""
        self.media_ops.clear()
        try:
            self.ftl.flush()
        except NoSpace as exc:
            log.error("namespace %d: flush: %s", self.nsid, exc)
        if self.timing is not None:
            self.timing.charge_now(self.media_ops)

    def start_command(self) -> None:
        self.media_ops.clear()

    def end_command(self, now_ns: int) -> int | None:
        """When the command's media work completes in the timing model (None untimed)."""
        if self.timing is None:
            return None
        return self.timing.charge(self.media_ops, now_ns)

    def background_step(self) -> bool:
        """One piece of idle-time work (GC, a due checkpoint); False if none is left."""
        self.media_ops.clear()
        try:
            return self.ftl.background_step()
        except NoSpace as exc:
            log.error("namespace %d: background GC: %s", self.nsid, exc)
            return False
        finally:
            if self.timing is not None:
                self.timing.charge_now(self.media_ops)

    def shutdown(self) -> None:
        """Leave the media clean: partial units programmed, a checkpoint of everything."""
        self.ftl.shutdown()
