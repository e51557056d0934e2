"""Identify Namespace of an Open-Channel namespace (2.0 and 1.2 alike): one LBA
format of the geometry's sector and OOB size, metadata in a separate buffer,
unwritten sectors read as zeroes, and the vendor-specific byte 0 set to 1, which
is how Linux (nvme_nvm_ns_supported) tells an Open-Channel namespace."""

from __future__ import annotations

from ocssd_vfu.spec.nvme import Dlfeat, IdentifyNamespace, MetadataCapabilities, Nsfeat, blank

OPEN_CHANNEL_VS = b"\x01".ljust(3712, b"\0")


def identify_namespace(size: int, sec_size: int, md_size: int, dulbe: bool) -> bytes:
    ident = blank(IdentifyNamespace)
    ident.update(dict(nsze=size, ncap=size, nuse=size,
                      nsfeat=Nsfeat.DULBE if dulbe else 0,
                      mc=MetadataCapabilities.SEPARATE, dlfeat=Dlfeat.READS_ZEROES,
                      vs=OPEN_CHANNEL_VS))
    ident.lbaf[0].lbads = sec_size.bit_length() - 1
    ident.lbaf[0].ms = md_size
    return IdentifyNamespace.build(ident)
