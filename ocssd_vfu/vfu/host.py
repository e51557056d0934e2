"""A host on the device's own libvfio-user callbacks, for the benches that run without
QEMU (hostbench, timingbench): guest RAM handed over through the DMA-register callback,
register and doorbell writes through the BAR0 callback, as libvfio-user calls them."""

from __future__ import annotations

import mmap
from typing import Any

from ocssd_vfu.vfu.binding import ffi, lib
from ocssd_vfu.vfu.device import VfuDevice


def map_guest_ram(device: VfuDevice, ram: mmap.mmap, iova: int) -> Any:
    """Hand `ram` to the device at `iova` as QEMU's DMA_MAP would: through the register
    callback. Returns the export of `ram` the region's address comes from: keep it while
    the device may touch guest RAM, then `ffi.release` it."""
    host = ffi.from_buffer(ram)
    info = ffi.new("vfu_dma_info_t *")
    info.iova.iov_base = ffi.cast("void *", iova)
    info.iova.iov_len = len(ram)
    info.vaddr = ffi.cast("void *", host)
    info.mapping.iov_base, info.mapping.iov_len = info.vaddr, len(ram)
    info.page_size = mmap.PAGESIZE
    info.prot = mmap.PROT_READ | mmap.PROT_WRITE
    lib.ocssd_dma_register(device.ctx, info)
    return host


def bar0_write(device: VfuDevice, register: int, width: int, value: int) -> None:
    """A BAR0 write as libvfio-user hands it over; RuntimeError if the device refuses it."""
    buf = ffi.new("uint8_t[]", value.to_bytes(width, "little"))
    if lib.ocssd_bar0_access(device.ctx, ffi.cast("char *", buf), width, register,
                             True) != width:
        raise RuntimeError(f"BAR0 write of {value:#x} at {register:#x} refused")
