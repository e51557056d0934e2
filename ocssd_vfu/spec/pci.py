"""PCI capabilities the device exposes (PCI Local Bus 3.0, PCIe Base 4.0, PM 1.2).

libvfio-user takes a capability as its raw bytes (it reads the id from byte 0
and knows each size), so they are built from these declarations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from construct import Bytes, Int8ul, Int16ul, Int32ul, Struct


@dataclass(frozen=True)
class PciIdentity:
    """Vendor, device, subsystem vendor and subsystem IDs of the function."""

    vendor: int
    device: int
    subsystem_vendor: int
    subsystem: int


class CapabilityId(enum.IntEnum):
    POWER_MANAGEMENT = 0x01
    PCI_EXPRESS = 0x10
    MSI_X = 0x11


PowerManagementCapability = Struct(
    "cap_id" / Int8ul,
    "next" / Int8ul,
    "pmc" / Int16ul,        # bits 2:0 version
    "pmcsr" / Int16ul,
    "pmcsr_bse" / Int8ul,
    "data" / Int8ul,
)

PciExpressCapability = Struct(       # endpoint, capability version 2: 60 bytes
    "cap_id" / Int8ul,
    "next" / Int8ul,
    "pxcap" / Int16ul,      # bits 3:0 version, 7:4 device/port type
    "pxdcap" / Int32ul,     # device capabilities (bit 28: FLR, left 0 on purpose)
    "pxdc" / Int16ul,
    "pxds" / Int16ul,
    "pxlcap" / Int32ul,     # bits 3:0 max link speed, 9:4 max link width
    "pxlc" / Int16ul,
    "pxls" / Int16ul,       # bits 3:0 current speed, 9:4 negotiated width
    "rest" / Bytes(40),     # slot/root registers and the *2 registers: all zero
)

MsixCapability = Struct(
    "cap_id" / Int8ul,
    "next" / Int8ul,
    "mxc" / Int16ul,        # bits 10:0 table size - 1, 14 function mask, 15 enable
    "mtab" / Int32ul,       # bits 2:0 BIR, 31:3 table offset
    "mpba" / Int32ul,       # bits 2:0 BIR, 31:3 PBA offset
)


def power_management() -> bytes:
    return PowerManagementCapability.build(dict(cap_id=CapabilityId.POWER_MANAGEMENT, next=0,
                                                pmc=0x3, pmcsr=0, pmcsr_bse=0, data=0))


def pci_express_endpoint() -> bytes:
    return PciExpressCapability.build(dict(cap_id=CapabilityId.PCI_EXPRESS, next=0,
                                           pxcap=0x0002, pxdcap=0, pxdc=0, pxds=0,
                                           pxlcap=0x11, pxlc=0, pxls=0x11, rest=bytes(40)))


def msix(vectors: int, bar: int, table_offset: int, pba_offset: int) -> bytes:
    return MsixCapability.build(dict(cap_id=CapabilityId.MSI_X, next=0, mxc=vectors - 1,
                                     mtab=table_offset | bar, mpba=pba_offset | bar))
