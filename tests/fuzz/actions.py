"""Random actions on a fuzz Target: mostly commands a driver could plausibly send
(vector writes at the write pointer, reads, resets), bent at random (LBAs out of
range or out of order, NLB past 64, PRPs and lists and MPTRs anywhere, reserved
bits), plus garbage SQEs, admin commands with random fields, raw register writes
(CC transitions, queue bases, doorbells past the queue size), DMA unmaps and remaps
and device resets. One function, `step`, draws and runs one action."""

from __future__ import annotations

import random
import struct

from ocssd_vfu.spec.nvme import Register
from tests.fuzz import model as m
from tests.fuzz.harness import (
    A_SIZE,
    ADMIN_OPCODES,
    B_SIZE,
    C_SIZE,
    DATA,
    MASK64,
    SCRATCH,
    A,
    B,
    C,
    Target,
)

DATA_PAGES = (A + A_SIZE - DATA) // m.PAGE


def address(rng: random.Random, bent: float = 0.3) -> int:
    """A guest address for data, a list or an MPTR: a data-area page, or with
    probability `bent` one of the kinds a hostile guest would pick."""
    page = DATA + rng.randrange(DATA_PAGES) * m.PAGE
    if rng.random() >= bent:
        return page
    return rng.choice((
        lambda: page + rng.randrange(4, m.PAGE, 4),                   # dword offset
        lambda: page + rng.randrange(1, m.PAGE),                      # any offset
        lambda: rng.choice((A + A_SIZE, B + B_SIZE)) - rng.choice((0, 0, 4, 8, 12, 16, 32)),
        lambda: rng.choice((A + A_SIZE, B + B_SIZE)) - m.PAGE * rng.randrange(1, 3),
        lambda: B + rng.randrange(B_SIZE // m.PAGE) * m.PAGE,         # read-only
        lambda: C + C_SIZE - rng.choice((8, 16, m.PAGE, 3 * m.PAGE)),  # top of 64-bit space
        lambda: rng.choice((0, 8, m.PAGE, A - m.PAGE, 1 << 63, MASK64 & ~7,
                            rng.getrandbits(64))),                    # unmapped
    ))()


def fill(target: Target, at: int, size: int) -> None:
    target.poke(at, target.rng.randbytes(size))


def prps(target: Target, length: int) -> tuple[int, int]:
    """PRP1/PRP2 for a transfer of `length` bytes; the list (if any) written to memory,
    its entries mostly data pages, sometimes anything."""
    rng = target.rng
    prp1 = address(rng, bent=0.15)
    if rng.random() < 0.05:
        return prp1, address(rng)
    first = min(length, m.PAGE - prp1 % m.PAGE)
    left = length - first
    if left <= m.PAGE:
        return prp1, address(rng) if left else rng.choice((0, rng.getrandbits(64)))
    pages = -(-left // m.PAGE)
    list_at = address(rng)
    slots = (m.PAGE - list_at % m.PAGE) // 8
    entries = []
    chained = pages > slots
    for _ in range(min(pages, slots - 1 if chained else slots)):
        entries.append(address(rng, bent=0.01))
    if chained:
        entries.append(address(rng))  # the next list page: its entries are whatever is there
    target.poke(list_at, struct.pack(f"<{len(entries)}Q", *entries))
    for entry in entries[:4]:
        fill(target, entry & ~(m.PAGE - 1), m.PAGE)
    fill(target, prp1 & ~(m.PAGE - 1), m.PAGE)
    return prp1, list_at


def lba_list(target: Target, write: bool) -> list[int]:
    """LBAs, mostly runs at (or near) chunk write pointers."""
    rng = target.rng
    lbas: list[int] = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        index = rng.randrange(m.CHUNKS)
        chunk = target.model.chunks[index]
        start = chunk.wp if write and chunk.wp < m.NUM_SEC else rng.randrange(m.NUM_SEC)
        if rng.random() < 0.1:
            start = rng.randrange(m.NUM_SEC)
        count = rng.choice((4, 4, 4, 8, 8, 16, 1, 3)) if write else rng.randrange(1, 17)
        base = m.chunk_slba(index)
        lbas += [base + start + k for k in range(count)]  # past sector 15: the next chunk
    if rng.random() < 0.15:
        i = rng.randrange(len(lbas))
        lbas[i] = rng.choice((m.lba(0, 3, 0), m.lba(0, 0, 5), m.lba(2, 0, 0),
                                  m.lba(1, 2, 7, 15), rng.getrandbits(64), lbas[i] + 1))
    if rng.random() < 0.03:
        lbas *= 70 // len(lbas) + 1  # past the 64 a vector command may carry
    return lbas[:rng.choice((64, 64, 64, 65, 70))]


def vector(target: Target, opc: int) -> None:
    rng = target.rng
    lbas = lba_list(target, write=opc == 0x91)
    nlb = len(lbas)
    if nlb == 1 and rng.random() < 0.8:
        lbal = lbas[0]
    else:
        lbal = address(rng)
        target.poke(lbal, struct.pack(f"<{nlb}Q", *(x & MASK64 for x in lbas)))
    prp1, prp2 = prps(target, nlb * m.SEC_SIZE)
    mptr = rng.choice((0, 0, address(rng)))
    if mptr and opc == 0x91:
        fill(target, mptr, min(nlb * m.MD_SIZE, m.PAGE - mptr % m.PAGE))
    nlb_field = nlb - 1 if rng.random() < 0.97 else rng.getrandbits(16)
    target.submit(1, opc=opc, nsid=rng.choice((1,) * 30 + (2, 0, 3, 0xFFFFFFFF)),
                  cdw10=lbal & 0xFFFFFFFF, cdw11=lbal >> 32, cdw12=nlb_field, mptr=mptr,
                  prp1=prp1, prp2=prp2, flags=rng.choice((0,) * 30 + (1, 0xC0, 0xC1)),
                  cdw13=rng.choice((0, 0, 0, rng.getrandbits(32))))


def scalar(target: Target) -> None:
    rng = target.rng
    nsid = rng.choice((1, 2))
    nlb = rng.choice((1, 4, 8, 16, 128, 129, 65536))
    if nsid == 1:
        index = rng.randrange(m.CHUNKS)
        slba = m.chunk_slba(index) + rng.choice((target.model.chunks[index].wp & 0xF,
                                                  rng.randrange(m.NUM_SEC)))
    else:
        slba = rng.choice((0, rng.randrange(m.PLAIN_NLBAS), m.PLAIN_NLBAS - 1,
                           rng.getrandbits(64)))
    prp1, prp2 = prps(target, min(nlb, 128) * m.SEC_SIZE)
    target.submit(1, opc=rng.choice((0x01, 0x02)), nsid=nsid, cdw10=slba & 0xFFFFFFFF,
                  cdw11=slba >> 32, cdw12=(nlb - 1) & 0xFFFF, prp1=prp1, prp2=prp2,
                  mptr=rng.choice((0, address(rng))))


def deallocate(target: Target) -> None:
    rng = target.rng
    count = rng.choice((1, 2, 3))
    ranges = b"".join(struct.pack("<IIQ", 0, rng.choice((16, 16, 15, 0)),
                                  m.chunk_slba(rng.randrange(m.CHUNKS)) + (rng.random() < 0.1))
                      for _ in range(count))
    prp1 = address(rng)
    target.poke(prp1, ranges)
    target.submit(1, opc=0x09, nsid=1, cdw10=count - 1, cdw11=rng.choice((4, 4, 0, 0xFFFFFFFF)),
                  prp1=prp1, prp2=address(rng))


# Admin commands this host and model do not follow, each tested on its own:
# - Doorbell Buffer Config (7Ch): this host rings MMIO doorbells only, and with shadow
#   doorbells configured the controller (rightly) goes by the shadow values it never
#   writes (tests/unit/test_doorbells.py drives them as Linux does);
# - Format NVM (80h): it changes the plain namespace's LBA format, which the model keeps
#   fixed (tests/unit/test_admin_logs.py and test_nvm_commands.py).
OUTSIDE_THE_MODEL = (0x7C, 0x80)


def no_sgl(flags: int) -> int:
    """CDW0 flags without PSDT 01b/10b: SGLs on the OCSSD namespace are outside the chunk
    model (sgl_plain fuzzes them on the plain namespace; test_sgl.py checks the SGL walk
    against its reference); PSDT 11b (reserved) stays."""
    return flags | 0xC0 if flags & 0xC0 else flags


SGL_TYPES = (0x00, 0x00, 0x10, 0x20, 0x30, 0x01, 0x40, 0xF0)  # Data Block ... reserved


def sgl_descriptor(rng: random.Random, length: int) -> bytes:
    return struct.pack("<QI3xB", address(rng), rng.choice((length, rng.getrandbits(32), 16, 0)),
                       rng.choice(SGL_TYPES))


def sgl_plain(target: Target) -> None:
    """A plain Read or Write whose data (and metadata, PSDT 10b) pointers are SGLs: a
    Data Block, Bit Bucket or segment descriptor in the SQE, segments of random
    descriptors anywhere."""
    rng = target.rng
    nlb = rng.choice((1, 2, 8, 33))
    first = sgl_descriptor(rng, nlb * m.PLAIN_LBA)
    for _ in range(rng.choice((0, 1, 2))):  # segments somewhere the descriptors may lead
        target.poke(address(rng), b"".join(sgl_descriptor(rng, rng.choice((512, 4096)))
                                           for _ in range(rng.choice((1, 2, 4)))))
    prp1, length_and_id = struct.unpack("<QQ", first)
    mptr = rng.choice((0, address(rng)))
    target.submit(1, opc=rng.choice((0x01, 0x02)), nsid=2, flags=rng.choice((0x40, 0x80)),
                  cdw10=rng.choice((0, rng.randrange(m.PLAIN_NLBAS))), cdw12=nlb - 1,
                  prp1=prp1, prp2=length_and_id, mptr=mptr)


def garbage_io(target: Target) -> None:
    rng = target.rng
    target.submit(1, opc=rng.choice((rng.getrandbits(8), 0x00, 0x01, 0x02, 0x09, 0x90, 0x91,
                                     0x92)),
                  flags=no_sgl(rng.getrandbits(8)), nsid=rng.choice((1, 2, rng.getrandbits(32))),
                  mptr=address(rng), prp1=address(rng), prp2=address(rng),
                  cdw10=rng.getrandbits(32), cdw11=rng.getrandbits(32),
                  cdw12=rng.getrandbits(32), cdw13=rng.getrandbits(32))


def admin(target: Target) -> None:
    rng = target.rng
    opc = rng.choice(ADMIN_OPCODES + (rng.getrandbits(8),))
    if opc in OUTSIDE_THE_MODEL:
        opc = 0xFF
    qid = rng.choice((1, 2, 3, 64, 65, 0, rng.getrandbits(16)))
    size = rng.choice((1, 2, 16, 1024, 1025, rng.getrandbits(16)))
    base = rng.choice((SCRATCH + rng.randrange(12) * m.PAGE, address(rng, bent=0.6)))
    cdw10 = rng.choice((qid | (size - 1) % 65536 << 16, rng.getrandbits(32),
                        rng.choice((1, 2, 3, 4, 5, 6, 7, 0xCA, 0x1E)) | rng.getrandbits(24) << 8,
                        rng.choice((1, 2, 3, 0xCA)) | rng.choice((0, 1, 3, 127)) << 16))
    cdw11 = rng.choice((1 | rng.randrange(4) << 16, 3 | rng.choice((1, 2, 65, 66)) << 16,
                        rng.getrandbits(32), 1 << 16))
    target.submit(0, opc=opc, flags=rng.choice((0,) * 20 + (1, 0x40)),
                  nsid=rng.choice((0, 1, 2, 3, 0xFFFFFFFF)), prp1=base, prp2=address(rng),
                  cdw10=cdw10, cdw11=cdw11, cdw12=rng.choice((0, 4, 960, rng.getrandbits(32))),
                  cdw13=rng.choice((0, 0, rng.getrandbits(32))))
    if opc in (0x00, 0x04) and cdw10 & 0xFFFF == 1:
        target.dirty = True  # the host's own queue may be gone: set them up again


def register_write(target: Target) -> None:
    rng = target.rng
    target.dirty = True  # the host starts over before its next command
    offset = rng.choice((Register.CC, Register.CC, Register.AQA, Register.ASQ,
                         Register.ASQ + 4, Register.ACQ, Register.ACQ + 4, Register.INTMS,
                         Register.INTMC, Register.CSTS, Register.CAP,
                         Register.DOORBELLS + 4 * rng.randrange(2 * 66),
                         Register.DOORBELLS + rng.randrange(0x3000), rng.randrange(0x4000)))
    value = rng.choice((rng.getrandbits(32), rng.randrange(32), 1, 0, 1 << 14, 2 << 14,
                        1 | 6 << 16 | 4 << 20, 1 | 6 << 16 | 4 << 20 | 1 << 14,
                        1 | rng.getrandbits(4) << 7, SCRATCH, 0xFFFF))
    target.mmio_write(offset, rng.choice((4, 4, 8, 2, 1)), value)
    target.process()  # doorbells past the tail run whatever is in the ring


def step(target: Target) -> None:
    rng = target.rng
    kind = rng.random()
    if kind < 0.34:
        vector(target, 0x91)
    elif kind < 0.52:
        vector(target, 0x92)
    elif kind < 0.58:
        vector(target, 0x90)
    elif kind < 0.66:
        scalar(target)
    elif kind < 0.69:
        deallocate(target)
    elif kind < 0.72:
        target.submit(1, opc=0x00, nsid=rng.choice((1, 2, 0xFFFFFFFF, 0, 7)))
    elif kind < 0.75:
        garbage_io(target)
    elif kind < 0.78:
        sgl_plain(target)
    elif kind < 0.88:
        admin(target)
    elif kind < 0.93:
        register_write(target)
    elif kind < 0.95:
        target.ctrl.mmio_read(rng.randrange(0x4000), rng.choice((1, 2, 4, 8)))
    elif kind < 0.97:
        region = rng.choice((B, C))
        target.map_region(region, not target.mapped[region])
    elif kind < 0.98:
        target.device_reset()
    else:
        target.submit(1, opc=0x02 if rng.random() < 0.5 else 0x92, nsid=1)
