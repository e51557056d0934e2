"""Spec structures: sizes, and the hot-path struct formats agree with the declarations."""

from __future__ import annotations

from ocssd_vfu.spec.nvme import (
    CQE_FORMAT,
    SQE_FORMAT,
    CompletionQueueEntry,
    IdentifyController,
    IdentifyNamespace,
    SubmissionQueueEntry,
)

# An annotated Read command: opcode 02h, CID 0x1234, NSID 1, PRP1 0x1000, SLBA 0x55, NLB 7.
READ_SQE = bytes.fromhex(
    "02 00 3412 01000000"          # CDW0 (opc, flags, cid), NSID
    " 00000000 00000000"           # CDW2, CDW3
    " 0000000000000000"            # MPTR
    " 0010000000000000"            # PRP1
    " 0000000000000000"            # PRP2
    " 55000000 00000000 07000000"  # CDW10 (SLBA lo), CDW11, CDW12 (NLB)
    " 00000000 00000000 00000000")


def test_sizes() -> None:
    assert SubmissionQueueEntry.sizeof() == SQE_FORMAT.size == 64
    assert CompletionQueueEntry.sizeof() == CQE_FORMAT.size == 16
    assert IdentifyController.sizeof() == 4096
    assert IdentifyNamespace.sizeof() == 4096


def test_sqe_struct_format_matches_declaration() -> None:
    parsed = SubmissionQueueEntry.parse(READ_SQE)
    fast = SQE_FORMAT.unpack(READ_SQE)
    names = [k for k in parsed if not k.startswith("_")]
    assert dict(zip(names, fast, strict=True)) == {k: parsed[k] for k in names}
    assert parsed.opc == 0x02 and parsed.cid == 0x1234 and parsed.prp1 == 0x1000
    assert parsed.cdw10 == 0x55 and parsed.cdw12 == 7
    assert SubmissionQueueEntry.build(parsed) == READ_SQE


def test_cqe_struct_format_matches_declaration() -> None:
    raw = CQE_FORMAT.pack(0xAABBCCDD, 0x11223344, 5, 1, 0x1234, (0x0281 << 1) | 1)
    parsed = CompletionQueueEntry.parse(raw)
    assert (parsed.dw0, parsed.dw1, parsed.sqhd, parsed.sqid, parsed.cid) == \
        (0xAABBCCDD, 0x11223344, 5, 1, 0x1234)
    assert parsed.status == 0x0503
    assert CompletionQueueEntry.build(parsed) == raw


def test_identify_field_offsets() -> None:
    ident = bytearray(4096)
    ident[77] = 7            # MDTS
    ident[256] = 0x08        # OACS
    ident[516] = 3           # NN
    parsed = IdentifyController.parse(bytes(ident))
    assert (parsed.mdts, parsed.oacs, parsed.nn) == (7, 8, 3)
    ns = bytearray(4096)
    ns[26] = 0x10            # FLBAS
    ns[128 + 2] = 12         # LBAF0.LBADS
    ns[384] = 1              # vendor specific byte 0
    parsed_ns = IdentifyNamespace.parse(bytes(ns))
    assert parsed_ns.flbas == 0x10 and parsed_ns.lbaf[0].lbads == 12 and parsed_ns.vs[0] == 1
