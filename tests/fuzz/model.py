"""An independent model of what the fuzzed device must do with each I/O command.

Written from the specs (NVMe 1.4 PRPs and generic statuses, OCSSD 2.0 chunk
rules as ocssd-spec.md states them), not from the code under test, and for one
fixed geometry whose numbers are literals here:

    2 groups x 3 PUs x 5 chunks x 16 sectors of 4096 + 16 bytes,
    ws_min 4, mw_cunits 8, early reset on, no multiple resets.
    LBA = sec | chk << 4 | pu << 7 | grp << 9 (3 PUs need 2 bits: pu 3 is out of range)
    chunk index = (grp * 3 + pu) * 5 + chk

The model keeps per chunk its state, WP, wear index, how far it reads back and
the data and OOB written to each sector; the namespace 2 is a plain 64-block
disk. `expect` predicts a command's status (and result) from guest memory as it
was before the command ran, `apply` then updates the model and says which guest
bytes a read must have produced.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ocssd_vfu.spec.status import DNR, Status

NUM_GRP, NUM_PU, NUM_CHK, NUM_SEC = 2, 3, 5, 16
SEC_SIZE, MD_SIZE, WS_MIN, MW_CUNITS = 4096, 16, 4, 8
CHUNKS = NUM_GRP * NUM_PU * NUM_CHK
PLAIN_NLBAS, PLAIN_LBA = 64, 4096
PAGE = 4096
MAX_TRANSFER = PAGE << 7           # MDTS 7 at 4 KiB pages
FREE, CLOSED, OPEN, OFFLINE = 1, 2, 4, 8
SEQUENTIAL, RANDOM = 1, 2
DESCRIPTOR = struct.Struct("<BBB5xQQQ")  # CS, CT, WLI, SLBA, CNLB, WP (32 bytes)

IPO = Status.INVALID_PRP_OFFSET | DNR
DTE = int(Status.DATA_TRANSFER_ERROR)
DEFERRED = -1


def lba(grp: int, pu: int, chk: int, sec: int = 0) -> int:
    return sec | chk << 4 | pu << 7 | grp << 9


def locate(address: int) -> tuple[int, int] | None:
    """(chunk index, sector) of an LBA, or None when a field is out of range."""
    sec, chk, pu, grp = (address & 0xF, (address >> 4) & 0x7, (address >> 7) & 0x3,
                         address >> 9)
    if sec >= NUM_SEC or chk >= NUM_CHK or pu >= NUM_PU or grp >= NUM_GRP:
        return None
    return (grp * NUM_PU + pu) * NUM_CHK + chk, sec


def chunk_slba(index: int) -> int:
    pu_index, chk = divmod(index, NUM_CHK)
    grp, pu = divmod(pu_index, NUM_PU)
    return lba(grp, pu, chk)


# -- guest memory as it was before the command ----------------------------------------------
Reader = Callable[[int, int, bool], bytes | None]  # (address, length, for_write) -> bytes


def prp_ranges(read: Reader, prp1: int, prp2: int, length: int,
               to_guest: bool) -> list[tuple[int, int]] | int:
    """The guest ranges of a PRP transfer, or its error status (NVMe 1.4 4.3): offsets
    are checked as the walk meets them, unmapped data pages only once it is over."""
    ranges: list[tuple[int, int]] = []
    unmapped = False

    def data(address: int, size: int) -> None:
        nonlocal unmapped
        if read(address, size, to_guest) is None:
            unmapped = True
        ranges.append((address, size))

    if prp1 & 3:
        return IPO
    first = min(length, PAGE - prp1 % PAGE)
    data(prp1, first)
    left = length - first
    if 0 < left <= PAGE:
        if prp2 % PAGE:
            return IPO
        data(prp2, left)
    elif left:
        if prp2 & 3:
            return IPO
        entry_address = prp2
        while left:
            slots = (PAGE - entry_address % PAGE) // 8
            needed = -(-left // PAGE)
            if needed > slots and slots < 2:
                return IPO
            count = min(slots, needed)
            raw = read(entry_address, count * 8, False)
            if raw is None:
                return DTE
            entries = struct.unpack(f"<{count}Q", raw)
            chained = needed > slots
            for entry in entries[:-1] if chained else entries:
                if entry % PAGE:
                    return IPO
                size = min(left, PAGE)
                data(entry, size)
                left -= size
            if chained:
                entry_address = entries[-1]
                if entry_address & 3:
                    return IPO
    return DTE if unmapped else ranges


@dataclass
class Chunk:
    state: int = FREE
    type: int = SEQUENTIAL
    wli: int = 0
    wp: int = 0
    readable: int = 0
    data: dict[int, bytes] = field(default_factory=dict)  # sector -> data, OOB
    oob: dict[int, bytes] = field(default_factory=dict)

    def descriptor(self, index: int) -> bytes:
        return DESCRIPTOR.pack(self.state, self.type, self.wli, chunk_slba(index), NUM_SEC,
                               self.wp)


@dataclass
class Expectation:
    """A command's predicted completion, and what to change if it completes so."""

    status: int
    result: int = 0
    apply: Callable[[], None] | None = None
    # The guest bytes the command leaves (a read's data and OOB, a reset's descriptors),
    # in the order it writes them; asked for after `apply`.
    output: Callable[[], list[tuple[int, bytes]]] = lambda: []
    # The plain namespace's Write Uncorrectable, Compare, Write Zeroes and Dataset
    # Management, and its commands with SGLs, are not modelled (tests/unit/test_nvm_commands.py
    # and test_sgl.py have their rules): any specific status, and the model takes the plain
    # namespace's data from the device.
    unmodelled: bool = False


PLAIN_UNMODELLED = (0x04, 0x05, 0x08, 0x09)


def fail(status: int, bitmap: int = 0) -> Expectation:
    return Expectation(status, bitmap)


class Model:
    def __init__(self) -> None:
        self.chunks = [Chunk() for _ in range(CHUNKS)]
        self.plain = bytearray(PLAIN_NLBAS * PLAIN_LBA)

    def impose(self, index: int, state: int, chunk_type: int, wp: int) -> None:
        """A --chunk-state line applied at start (OFFLINE chunks have WP 0xFFFF)."""
        chunk = self.chunks[index]
        chunk.state, chunk.type = state, chunk_type
        chunk.wp = 0xFFFF if state == OFFLINE else wp
        chunk.readable = wp if state in (OPEN, CLOSED) else 0

    def settle(self) -> None:
        """Flush, shutdown, device reset: the write cache reaches the media."""
        for chunk in self.chunks:
            chunk.readable = min(chunk.wp, NUM_SEC) if chunk.state in (OPEN, CLOSED) else 0

    def descriptors(self) -> bytes:
        return b"".join(chunk.descriptor(i) for i, chunk in enumerate(self.chunks))

    # -- dispatch ---------------------------------------------------------------------------
    def expect_io(self, cmd: tuple[int, ...], read: Reader, dulbe: bool) -> Expectation:
        opc, flags, _cid, nsid = cmd[:4]
        mptr, prp1, prp2, cdw10, cdw11, cdw12 = cmd[6:12]
        if opc not in (0x00, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x90, 0x91, 0x92):
            return fail(Status.INVALID_OPCODE | DNR)
        if flags & 0x03 or flags & 0xC0 == 0xC0:  # fused, or PSDT 11b (reserved)
            return fail(Status.INVALID_FIELD | DNR)
        if opc == 0x00:
            if nsid not in (1, 2, 0xFFFFFFFF):
                return fail(Status.INVALID_NAMESPACE | DNR)
            return Expectation(DEFERRED, apply=self.settle)
        if nsid == 2:
            if opc in PLAIN_UNMODELLED or flags & 0xC0:  # + SGLs (PSDT 01b, 10b)
                return Expectation(Status.SUCCESS, unmodelled=True)
            if opc not in (0x01, 0x02):
                return fail(Status.INVALID_OPCODE | DNR)
            return self._plain(opc == 0x01, cdw10 | cdw11 << 32, (cdw12 & 0xFFFF) + 1,
                               prp1, prp2, read)
        if nsid != 1:
            return fail(Status.INVALID_NAMESPACE | DNR)
        if opc in PLAIN_UNMODELLED and opc != 0x09:  # not offered by an OCSSD namespace
            return fail(Status.INVALID_OPCODE | DNR)
        if opc == 0x09:
            return self._deallocate(cdw10, cdw11, prp1, prp2, read)
        nlb = (cdw12 & 0xFFFF) + 1
        if opc in (0x01, 0x02):
            if nlb * SEC_SIZE > MAX_TRANSFER:
                return fail(Status.INVALID_FIELD | DNR)
            start = cdw10 | cdw11 << 32
            lbas = list(range(start, start + nlb))
        else:
            if nlb > 64:
                return fail(Status.INVALID_FIELD | DNR)
            lbal = cdw10 | cdw11 << 32
            if nlb == 1:
                lbas = [lbal]
            else:
                raw = read(lbal, nlb * 8, False)
                if raw is None:
                    return fail(DTE)
                lbas = list(struct.unpack(f"<{nlb}Q", raw))
        if opc == 0x90:
            return self._reset(lbas, mptr, read)
        if opc in (0x01, 0x91):
            expectation = self._write(lbas, prp1, prp2, mptr, read)
        else:
            expectation = self._read(lbas, prp1, prp2, mptr, read, dulbe)
        if opc in (0x01, 0x02):
            expectation.result = 0  # a scalar command reports no per-LBA bitmap
        return expectation

    # -- plain namespace --------------------------------------------------------------------
    def _plain(self, write: bool, slba: int, nlb: int, prp1: int, prp2: int,
               read: Reader) -> Expectation:
        if nlb * PLAIN_LBA > MAX_TRANSFER:
            return fail(Status.INVALID_FIELD | DNR)
        if slba + nlb > PLAIN_NLBAS:
            return fail(Status.LBA_OUT_OF_RANGE | DNR)
        ranges = prp_ranges(read, prp1, prp2, nlb * PLAIN_LBA, to_guest=not write)
        if isinstance(ranges, int):
            return fail(ranges)
        at = slba * PLAIN_LBA
        if write:
            payload = b"".join(read(a, n, False) or b"" for a, n in ranges)

            def store() -> None:
                self.plain[at:at + len(payload)] = payload
            return Expectation(Status.SUCCESS, apply=store)
        output = _scatter(ranges, bytes(self.plain[at:at + nlb * PLAIN_LBA]))
        return Expectation(Status.SUCCESS, output=lambda: output)

    # -- OCSSD ------------------------------------------------------------------------------
    def _runs(self, lbas: list[int]) -> list[tuple[int, int, int, int]] | Expectation:
        """(chunk, first sector, count, position in the list) per run of consecutive
        sectors of one chunk; or LBA Out of Range with the bitmap of the bad LBAs."""
        runs: list[list[int]] = []
        bad = 0
        for i, address in enumerate(lbas):
            where = locate(address)
            if where is None:
                bad |= 1 << i
                continue
            chunk, sec = where
            last = runs[-1] if runs else None
            if last and last[0] == chunk and last[1] + last[2] == sec and last[3] + last[2] == i:
                last[2] += 1
            else:
                runs.append([chunk, sec, 1, i])
        if bad:
            return fail(Status.LBA_OUT_OF_RANGE | DNR, bad)
        return [(c, s, n, i) for c, s, n, i in runs]

    def _write(self, lbas: list[int], prp1: int, prp2: int, mptr: int,
               read: Reader) -> Expectation:
        runs = self._runs(lbas)
        if isinstance(runs, Expectation):
            return runs
        status, failed = 0, 0
        projected: dict[int, int] = {}
        for chunk_index, start, count, first in runs:
            chunk = self.chunks[chunk_index]
            wp = projected.get(chunk_index, chunk.wp)
            if chunk.type == RANDOM:
                verdict = (Status.OUT_OF_ORDER_WRITE if chunk.state != OPEN else
                           Status.WRITE_FAULT if start + count > NUM_SEC else 0)
            elif chunk.state not in (FREE, OPEN) or start != wp:
                verdict = Status.OUT_OF_ORDER_WRITE
            elif count % WS_MIN:
                verdict = Status.INVALID_FIELD
            elif start + count > NUM_SEC:
                verdict = Status.WRITE_FAULT
            else:
                verdict = 0
            if verdict:
                status = status or verdict | DNR
                failed |= ((1 << count) - 1) << first
            projected[chunk_index] = start + count
        if status:
            return fail(status, failed)
        oob = b""
        if mptr:
            raw = read(mptr, len(lbas) * MD_SIZE, False)
            if raw is None:
                return fail(DTE)
            oob = raw
        ranges = prp_ranges(read, prp1, prp2, len(lbas) * SEC_SIZE, to_guest=False)
        if isinstance(ranges, int):
            return fail(ranges)
        payload = b"".join(read(a, n, False) or b"" for a, n in ranges)

        def store() -> None:
            for chunk_index, start, count, first in runs:
                chunk = self.chunks[chunk_index]
                for k in range(count):
                    at = (first + k) * SEC_SIZE
                    chunk.data[start + k] = payload[at:at + SEC_SIZE]
                    md = oob[(first + k) * MD_SIZE:(first + k + 1) * MD_SIZE]
                    chunk.oob[start + k] = md or b"\xff" * MD_SIZE
                chunk.wp = max(chunk.wp, start + count)
                if chunk.wp >= NUM_SEC and chunk.type == SEQUENTIAL:
                    chunk.state, chunk.readable = CLOSED, chunk.wp
                else:
                    chunk.state = OPEN
                    chunk.readable = max(chunk.readable, chunk.wp - MW_CUNITS)
        return Expectation(Status.SUCCESS, apply=store)

    def _read(self, lbas: list[int], prp1: int, prp2: int, mptr: int, read: Reader,
              dulbe: bool) -> Expectation:
        runs = self._runs(lbas)
        if isinstance(runs, Expectation):
            return runs
        data, oob, unwritten = [], [], 0
        for chunk_index, start, count, first in runs:
            chunk = self.chunks[chunk_index]
            for k in range(count):
                sector = start + k
                if sector < chunk.readable:
                    data.append(chunk.data.get(sector, bytes(SEC_SIZE)))
                    oob.append(chunk.oob.get(sector, bytes(MD_SIZE)))
                else:
                    unwritten |= 1 << (first + k)
                    data.append(bytes(SEC_SIZE))
                    oob.append(b"\xff" * MD_SIZE)
        if unwritten and dulbe:
            return fail(Status.DEALLOCATED_OR_UNWRITTEN | DNR, unwritten)
        if mptr and read(mptr, len(lbas) * MD_SIZE, True) is None:
            return fail(DTE)
        ranges = prp_ranges(read, prp1, prp2, len(lbas) * SEC_SIZE, to_guest=True)
        if isinstance(ranges, int):
            return fail(ranges)
        output = _scatter(ranges, b"".join(data))
        if mptr:
            output.append((mptr, b"".join(oob)))  # after the data: it wins where they overlap
        return Expectation(Status.SUCCESS, output=lambda: output)

    def _reset(self, lbas: list[int], mptr: int, read: Reader) -> Expectation:
        status, failed = 0, 0
        plan: list[tuple[int | None, bool]] = []
        states = [(c.state, c.wp) for c in self.chunks]  # as the resets go, in list order
        for i, address in enumerate(lbas):
            where = locate(address)
            if where is None:
                status, failed = status or Status.LBA_OUT_OF_RANGE | DNR, failed | 1 << i
                plan.append((None, False))
                continue
            index = where[0]
            state = states[index][0]
            verdict = (Status.OFFLINE_CHUNK if state == OFFLINE else
                       Status.INVALID_RESET if state == FREE else 0)
            if verdict:
                status, failed = status or verdict | DNR, failed | 1 << i
            else:
                states[index] = (FREE, 0)
            plan.append((index, not verdict))
        descriptors_land = bool(mptr) and read(mptr, len(lbas) * 32, True) is not None
        if mptr and not descriptors_land:
            status = status or DTE

        descriptors: list[bytes] = []

        def apply() -> None:
            for index, resets in plan:
                if index is None:
                    descriptors.append(bytes(32))
                    continue
                if resets:
                    chunk = self.chunks[index]
                    chunk.state, chunk.wp, chunk.readable = FREE, 0, 0
                    chunk.wli = min(chunk.wli + 1, 0xFF)
                    chunk.data.clear()
                    chunk.oob.clear()
                descriptors.append(self.chunks[index].descriptor(index))
        expectation = Expectation(status, failed, apply=apply)
        if descriptors_land:
            expectation.output = lambda: [(mptr, b"".join(descriptors))]
        return expectation

    def _deallocate(self, cdw10: int, cdw11: int, prp1: int, prp2: int,
                    read: Reader) -> Expectation:
        if not cdw11 & 0x4:
            return Expectation(Status.SUCCESS)
        count = (cdw10 & 0xFF) + 1
        ranges = prp_ranges(read, prp1, prp2, count * 16, to_guest=False)
        if isinstance(ranges, int):
            return fail(ranges)
        raw = b"".join(read(a, n, False) or b"" for a, n in ranges)
        starts = []
        for _, length, slba in struct.iter_unpack("<IIQ", raw):
            where = locate(slba)
            if where is None or where[1] != 0 or length != NUM_SEC:
                return fail(Status.INVALID_FIELD | DNR)
            starts.append(slba)
        expectation = self._reset(starts, 0, read)
        expectation.result = 0
        return expectation


def _scatter(ranges: list[tuple[int, int]], payload: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    for address, size in ranges:
        out.append((address, payload[at:at + size]))
        at += size
    return out
