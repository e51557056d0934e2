"""Command dword and register layouts (spec/commands.py, spec/nvme.py): each one's fields
at the bits the spec gives, and every hot-path decoder and struct form agrees with the
declaration it stands for."""

from __future__ import annotations

import pytest

from ocssd_vfu.nvme.capabilities import CAP
from ocssd_vfu.spec.bitfields import fields_mask
from ocssd_vfu.spec.commands import (
    DSM_DEALLOCATE,
    WRITE_ZEROES_DEAC,
    ArbitrationValue,
    AsyncEventConfigurationValue,
    DatasetManagementCdw10,
    DatasetManagementCdw11,
    ErrorRecoveryValue,
    FormatNvmCdw10,
    GetLogPageCdw10,
    ReadWriteCdw12,
    VectorCdw12,
    WriteZeroesCdw12,
    block_count,
    dsm_ranges,
    lba_range,
    ocssd12_control,
    vector_count,
)
from ocssd_vfu.spec.nvme import (
    DSM_RANGE_FORMAT,
    SGL_DESCRIPTOR_FORMAT,
    Aqa,
    Cap,
    Cc,
    Csts,
    DatasetManagementRange,
    SglDescriptor,
)

CDW12S = [0, 1, 0xFFFF, 0x1_0000, 0xABCD_1234, 0xFFFF_FFFF, 0x8000_003F]


@pytest.mark.parametrize("cdw12", CDW12S)
def test_hot_path_decoders_agree_with_their_layouts(cdw12: int) -> None:
    assert lba_range(0x55, 0x1, cdw12) == (0x1_0000_0055, ReadWriteCdw12.get(cdw12, "nlb") + 1)
    assert block_count(cdw12) == ReadWriteCdw12.parse(cdw12).nlb + 1
    assert vector_count(cdw12) == VectorCdw12.parse(cdw12).nlb + 1
    assert ocssd12_control(cdw12) == VectorCdw12.parse(cdw12).control
    assert dsm_ranges(cdw12) == DatasetManagementCdw10.parse(cdw12).nr + 1


def test_literal_field_positions() -> None:
    assert WRITE_ZEROES_DEAC == 1 << 25 == WriteZeroesCdw12.build(deac=1)
    assert DSM_DEALLOCATE == 1 << 2 == DatasetManagementCdw11.build(ad=1)
    assert ReadWriteCdw12.build(nlb=7, fua=1) == 0x4000_0007
    fmt = FormatNvmCdw10.parse(0x213)           # SES 1, MSET, LBAF 3
    assert (fmt.lbaf, fmt.mset, fmt.pi, fmt.ses) == (3, 1, 0, 1)
    log = GetLogPageCdw10.parse(0x007F_00CA)    # NUMDL 7Fh, LID CAh
    assert (log.lid, log.numdl) == (0xCA, 0x7F)
    assert fields_mask(ArbitrationValue) == 0xFFFF_FF07
    assert fields_mask(AsyncEventConfigurationValue) == 0x3FF
    assert fields_mask(ErrorRecoveryValue) == 0x1_FFFF


def test_register_layouts() -> None:
    # MQES 1023, CQR, TO 20 (10 s), CSS bit 37: NVM command set
    assert CAP == 0x0000_0020_1401_03FF
    cap = Cap.parse(CAP)
    assert (cap.mqes, cap.cqr, cap.to, cap.css, cap.mpsmin, cap.mpsmax) == (1023, 1, 20, 1, 0, 0)
    cc = Cc.parse(0x0046_4001)                  # Linux: EN, IOSQES 6, IOCQES 4, SHN 01b
    assert (cc.en, cc.css, cc.mps, cc.shn, cc.iosqes, cc.iocqes) == (1, 0, 0, 1, 6, 4)
    assert Csts.build(rdy=1, shst=0b10) == 0x9 and Csts.mask("cfs") == 0x2
    aqa = Aqa.parse(0x001F_000F)
    assert (aqa.asqs, aqa.acqs) == (15, 31)


def test_struct_forms_agree_with_declarations() -> None:
    raw = bytes(range(16))
    descriptor = SglDescriptor.parse(raw)
    address, length_and_id = SGL_DESCRIPTOR_FORMAT.unpack(raw)
    assert address == descriptor.address
    assert length_and_id & 0xFFFF_FFFF == descriptor.length
    assert length_and_id >> 56 == descriptor.sgl_identifier
    dsm = DatasetManagementRange.parse(raw)
    assert DSM_RANGE_FORMAT.unpack(raw) == (dsm.context_attributes, dsm.length, dsm.slba)
