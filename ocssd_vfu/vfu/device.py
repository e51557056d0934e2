"""The PCI function over libvfio-user: config space, BARs, DMA map, IRQs.

Callbacks run inside vfu_run_ctx on the trio thread; they only update the
controller's state and return (the run loop calls `controller.process()` once
per wake-up). BAR0 is a C callback (native/build_ffi.py): an I/O queue doorbell
the controller's C doorbell path takes whole (nvme/native_doorbells.py) never
enters Python, and its interrupt is raised there; everything else comes to the
Python callback, and every Python callback that changes state (a register write,
DMA map or unmap, a reset) pauses the C doorbell path first.
The device is reached through the context's private pointer (a struct
ocssd_bar0 holding its handle).
Workarounds for libvfio-user 0b28d205 (vfio-user.md §3): ERR and REQ IRQ
counts 0, no sparse mmap areas, guest RAM must be fd-backed (regions without a
vaddr are not added, so commands that point there fail with Data Transfer Error).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
from typing import Any

from ocssd_vfu.dma import native as dma
from ocssd_vfu.dma.memory import GuestMemory
from ocssd_vfu.nvme.controller import Controller
from ocssd_vfu.spec import pci
from ocssd_vfu.spec.pci import PciIdentity
from ocssd_vfu.vfu.binding import check, create_socket_context, ffi, lib

log = logging.getLogger("ocssd_vfu.vfu")

BAR0_SIZE = 0x4000        # registers + doorbells for 1 + 64 queue pairs, a power of two
MSIX_BAR = 4
MSIX_BAR_SIZE = 0x2000
MSIX_TABLE_OFFSET = 0x0
MSIX_PBA_OFFSET = 0x1000
CONFIG_SPACE_SIZE = 4096  # PCI Express: the extended configuration space
RAM_WITHOUT_FD_WARNING = 16 << 20
NVME_CLASS = (0x01, 0x08, 0x02)  # mass storage, non-volatile memory, NVMe
SYSLOG_LEVELS = {3: logging.ERROR, 4: logging.WARNING, 5: logging.INFO, 6: logging.INFO,
                 7: logging.DEBUG}


class VfuDevice:
    def __init__(self, socket_path: str, controller: Controller, identity: PciIdentity) -> None:
        self.controller = controller
        self.memory: GuestMemory = controller.memory
        controller.interrupt = self.trigger  # the device is the controller's interrupt line
        self._handle = ffi.new_handle(self)
        self._private = ffi.new("struct ocssd_bar0 *")
        self._private.python, self._private.irq_fd = self._handle, -1
        native = controller.native
        if native is not None:  # addresses: the handler is in the DMA module
            self._private.handler, self._private.table = native.handler, native.address
        umask = os.umask(0o177)  # the socket is born 0600: no moment when others may connect
        try:
            self.ctx = create_socket_context(socket_path, self._private)
        finally:
            os.umask(umask)
        try:
            self._configure(identity)
        except BaseException:
            lib.vfu_destroy_ctx(self.ctx)
            raise

    def _configure(self, identity: PciIdentity) -> None:
        ctx = self.ctx
        check(lib.vfu_setup_log(ctx, lib.ocssd_log, 4), "vfu_setup_log")
        check(lib.vfu_pci_init(ctx, lib.VFU_PCI_TYPE_EXPRESS, lib.PCI_HEADER_TYPE_NORMAL, 0),
              "vfu_pci_init")
        lib.vfu_pci_set_id(ctx, identity.vendor, identity.device, identity.subsystem_vendor,
                           identity.subsystem)
        lib.vfu_pci_set_class(ctx, *NVME_CLASS)
        vectors = self.controller.config.msix_vectors
        for cap in (pci.power_management(), pci.pci_express_endpoint(),
                    pci.msix(vectors, MSIX_BAR, MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET)):
            check(lib.vfu_pci_add_capability(ctx, 0, 0, ffi.from_buffer(bytearray(cap))),
                  "vfu_pci_add_capability")
        mem_rw = lib.VFU_REGION_FLAG_RW | lib.VFU_REGION_FLAG_MEM
        check(lib.vfu_setup_region(ctx, lib.VFU_PCI_DEV_BAR0_REGION_IDX, BAR0_SIZE,
                                   lib.ocssd_bar0_access, mem_rw, ffi.NULL, 0, -1, 0),
              "vfu_setup_region(BAR0)")
        # 0b28d205's vfu_pci_init sizes config space but leaves its region flags 0: say RW,
        # with no callback so that the library keeps answering config accesses itself.
        check(lib.vfu_setup_region(ctx, lib.VFU_PCI_DEV_CFG_REGION_IDX, 4096, ffi.NULL,
                                   lib.VFU_REGION_FLAG_RW, ffi.NULL, 0, -1, 0),
              "vfu_setup_region(config space)")
        check(lib.vfu_setup_region(ctx, lib.VFU_PCI_DEV_BAR4_REGION_IDX, MSIX_BAR_SIZE,
                                   lib.ocssd_msix_bar_access, mem_rw, ffi.NULL, 0, -1, 0),
              "vfu_setup_region(BAR4)")
        check(lib.vfu_setup_device_dma(ctx, lib.ocssd_dma_register, lib.ocssd_dma_unregister),
              "vfu_setup_device_dma")
        check(lib.vfu_setup_device_reset_cb(ctx, lib.ocssd_reset), "vfu_setup_device_reset_cb")
        check(lib.vfu_setup_device_nr_irqs(ctx, lib.VFU_DEV_MSIX_IRQ, vectors), "nr_irqs(MSIX)")
        check(lib.vfu_setup_device_nr_irqs(ctx, lib.VFU_DEV_INTX_IRQ, 1), "nr_irqs(INTX)")
        # 0b28d205 pre-sets one ERR and one REQ IRQ; QEMU would then wire ERR to vector 0
        # and stop the VM on the first interrupt.
        check(lib.vfu_setup_device_nr_irqs(ctx, lib.VFU_DEV_ERR_IRQ, 0), "nr_irqs(ERR)")
        check(lib.vfu_setup_device_nr_irqs(ctx, lib.VFU_DEV_REQ_IRQ, 0), "nr_irqs(REQ)")
        check(lib.vfu_realize_ctx(ctx), "vfu_realize_ctx")
        # libvfio-user keeps config space (header, BARs, command register, PM, MSI-X
        # enable) across clients: each new one must find it as at power-on.
        self._config_space = ffi.buffer(lib.vfu_pci_get_config_space(ctx), CONFIG_SPACE_SIZE)
        self._power_on_config = bytes(self._config_space)

    def poll_fd(self) -> int:
        return check(lib.vfu_get_poll_fd(self.ctx), "vfu_get_poll_fd")

    def trigger(self, vector: int) -> None:
        if lib.vfu_irq_trigger(self.ctx, vector) < 0 and ffi.errno != errno.ENOENT:
            # ENOENT: the guest has not set up this vector yet (normal early on). The fds
            # are non-blocking (scripts/libvfio-user-robustness.patch): EAGAIN is a client
            # that does not read its interrupt fd; counted and logged rate-limited.
            self.controller.guest_error("irq_fd", f"interrupt vector {vector} not "
                                        f"delivered: {os.strerror(ffi.errno)}")

    def interrupt_to(self, eventfd: int) -> None:
        """For the benches with no client (vfu/host.py): every interrupt, C's and Python's,
        goes to `eventfd` (as vfu_irq_trigger writes a client's) instead of libvfio-user."""
        self._private.irq_fd = eventfd
        self.controller.interrupt = lambda vector: os.eventfd_write(eventfd, 1)

    def destroy(self) -> None:
        self.controller.release_native()  # nothing of C's left unfolded; the image let go
        if self.ctx is not None:
            lib.vfu_destroy_ctx(self.ctx)
            self.ctx = None

    # -- callback bodies -------------------------------------------------------------------
    def bar0_access(self, buf: Any, count: int, offset: int, is_write: bool) -> int:
        if count not in (1, 2, 4, 8) or offset + count > BAR0_SIZE:
            ffi.errno = errno.EINVAL
            return -1
        data = ffi.buffer(buf, count)
        if is_write:
            self.controller.mmio_write(offset, count, int.from_bytes(data[:], "little"))
        else:
            data[:] = self.controller.mmio_read(offset, count).to_bytes(count, "little")
        return count

    def dma_register(self, info: Any) -> None:
        self.controller.pause_native()
        start, length = int(ffi.cast("uintptr_t", info.iova.iov_base)), info.iova.iov_len
        if info.vaddr == ffi.NULL:
            # QEMU always maps a few small ROM areas without an fd; guest RAM without one
            # means the VM was not started with shared, fd-backed memory.
            level = logging.WARNING if length >= RAM_WITHOUT_FD_WARNING else logging.DEBUG
            log.log(level, "DMA region %#x+%#x has no fd: commands pointing there will fail "
                    "(guest RAM must be memory-backend-memfd or share=on)", start, length)
            return
        view = memoryview(ffi.buffer(ffi.cast("char *", info.vaddr), length))
        try:
            self.memory.add(start, view, writable=bool(info.prot & mmap.PROT_WRITE))
        except ValueError as exc:
            log.warning("%s", exc)
            return
        # The client may shrink the file under us: a fault there must not end the server.
        if dma.lib.ocssd_guard_watch(_dma_pointer(info.vaddr), length,
                                     dma.lib.OCSSD_GUARD_GUEST) < 0:
            log.warning("DMA region %#x+%#x: too many regions to guard", start, length)

    def dma_unregister(self, info: Any) -> None:
        self.controller.pause_native()
        start = int(ffi.cast("uintptr_t", info.iova.iov_base))
        with contextlib.suppress(KeyError):  # a region we never added (no vaddr)
            self.memory.remove(start)
            dma.lib.ocssd_guard_unwatch(_dma_pointer(info.vaddr))

    def reset(self, kind: int) -> int:
        # Every kind (DEVICE_RESET, lost connection, FLR) is a full reset; on a lost
        # connection libvfio-user has already unregistered the DMA regions, and the next
        # client gets the power-on config space.
        self.controller.pause_native()
        self.controller.device_reset()
        if kind == lib.VFU_RESET_LOST_CONN:
            self._config_space[:] = self._power_on_config
        return 0


def _dma_pointer(vaddr: Any) -> Any:
    """libvfio-user's pointer as the DMA shim's cffi module types it (two modules)."""
    return dma.ffi.cast("void *", int(ffi.cast("uintptr_t", vaddr)))


def _device(ctx: Any) -> VfuDevice:
    device: VfuDevice = ffi.from_handle(
        ffi.cast("struct ocssd_bar0 *", lib.vfu_get_private(ctx)).python)
    return device


def _errno_on_exception(exception: type, value: BaseException, traceback: Any) -> None:
    log.error("exception in a libvfio-user callback", exc_info=(exception, value, traceback))
    ffi.errno = errno.EIO


@ffi.def_extern(error=-1, onerror=_errno_on_exception)
def ocssd_bar0_access_python(ctx: Any, buf: Any, count: int, offset: int, is_write: bool) -> int:
    return _device(ctx).bar0_access(buf, count, offset, is_write)


@ffi.def_extern(error=-1, onerror=_errno_on_exception)
def ocssd_msix_bar_access(ctx: Any, buf: Any, count: int, offset: int, is_write: bool) -> int:
    # QEMU emulates the table itself and forwards only PBA reads: nothing is pending here.
    if not is_write:
        ffi.buffer(buf, count)[:] = bytes(count)
    return count


@ffi.def_extern(onerror=_errno_on_exception)
def ocssd_dma_register(ctx: Any, info: Any) -> None:
    _device(ctx).dma_register(info)


@ffi.def_extern(onerror=_errno_on_exception)
def ocssd_dma_unregister(ctx: Any, info: Any) -> None:
    _device(ctx).dma_unregister(info)


@ffi.def_extern(error=-1, onerror=_errno_on_exception)
def ocssd_reset(ctx: Any, kind: int) -> int:
    return _device(ctx).reset(kind)


@ffi.def_extern()
def ocssd_log(ctx: Any, level: int, message: Any) -> None:
    log.log(SYSLOG_LEVELS.get(level, logging.ERROR), "libvfio-user: %s",
            ffi.string(message).decode(errors="replace"))
