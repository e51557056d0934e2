"""I/O doorbells through a real libvfio-user context: the C BAR0 callback takes one
whole (the fast path run, the CQE posted, the interrupt written) without calling the
Python callback, which still gets everything else."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

import pytest

from ocssd_vfu import hostbench
from ocssd_vfu.app import ServeOptions, assemble
from ocssd_vfu.devices import PLAIN_NVME_ID
from ocssd_vfu.spec.nvme import CQE_FORMAT, SQE_FORMAT, AdminOpcode, IoOpcode, Register
from ocssd_vfu.vfu.binding import ffi

SQ1_TAIL, CQ1_HEAD = Register.DOORBELLS + 8, Register.DOORBELLS + 12


def test_an_io_doorbell_is_taken_in_c_without_the_python_callback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "plain.raw"
    image.write_bytes(b"\xA5" * 4096 + bytes((16 << 20) - 4096))
    assembled = assemble(ServeOptions(socket=tmp_path / "sock", image=image, mode="nvme"))
    controller, device = hostbench.bench_device(tmp_path / "sock", assembled, PLAIN_NVME_ID,
                                                c_doorbells=True)
    interrupts = os.eventfd(0, os.EFD_NONBLOCK)
    device.interrupt_to(interrupts)
    ram = mmap.mmap(-1, hostbench.RAM_SIZE)
    export = hostbench.map_guest_ram(device, ram)
    try:
        driver = hostbench.HostDriver(device, ram)
        driver.enable()
        driver.admin(AdminOpcode.CREATE_IO_CQ, 1 | 15 << 16, 1 | 1 << 1 | 1 << 16,
                     hostbench.IO_CQ)
        driver.admin(AdminOpcode.CREATE_IO_SQ, 1 | 15 << 16, 1 | 1 << 16, hostbench.IO_SQ)
        controller.process()  # the server's next wake-up: C on
        assert os.eventfd_read(interrupts) == 2  # the admin commands', from Python
        python_calls: list[Any] = []
        python_callback = device.bar0_access
        monkeypatch.setattr(device, "bar0_access",
                            lambda *args: python_calls.append(args) or python_callback(*args))
        SQE_FORMAT.pack_into(ram, driver.offset(hostbench.IO_SQ), IoOpcode.READ, 0, 7, 1, 0,
                             0, 0, hostbench.DATA, 0, 0, 0, 0, 0, 0, 0)
        driver.doorbell(SQ1_TAIL, 1)
        assert python_calls == [] and not controller.needs_processing()
        cqe = CQE_FORMAT.unpack_from(ram, driver.offset(hostbench.IO_CQ))
        assert (cqe[2], cqe[3], cqe[4], cqe[5]) == (1, 1, 7, 1)  # SQ head, SQ, cid, phase
        assert ram[driver.offset(hostbench.DATA):][:4096] == b"\xA5" * 4096
        assert os.eventfd_read(interrupts) == 1
        driver.doorbell(CQ1_HEAD, 1)
        assert python_calls == []
        driver.doorbell(Register.DOORBELLS + 4, driver.admin_tail)  # the admin CQ: Python's
        assert len(python_calls) == 1 and controller.needs_processing()
    finally:
        ffi.release(export)
        device.destroy()
        assembled.close()
        os.close(interrupts)
