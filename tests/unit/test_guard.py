"""native/guard.c: memory taken away under the server fails a command, never the process.

Each case runs in a child process, so that a fault the guard misses shows as the
child's death by SIGBUS (as it was before the guard) instead of ending pytest.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

SETUP = """
import mmap, os
from ocssd_vfu.dma.memory import GuestMemory, TransferError
from ocssd_vfu.dma import prp
from ocssd_vfu.dma.native import ffi, lib

def memfd(size, kind=None):
    # A memfd and its mapping, watched as `kind` (GUEST or IMAGE) unless None.
    fd = os.memfd_create("guard-test")
    os.ftruncate(fd, size)
    mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    if kind is not None:
        address = int(ffi.cast("uintptr_t", ffi.from_buffer(mapping)))
        lib.ocssd_guard_watch(ffi.cast("void *", address), size, getattr(lib, kind))
    return fd, mapping

def status_of(call):
    try:
        call()
    except TransferError as err:
        return hex(err.status)
    return "ok"
"""


def run(body: str) -> subprocess.CompletedProcess[str]:
    script = SETUP + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)


def test_guest_memfd_shrunk_after_mapping_is_a_data_transfer_error() -> None:
    child = run("""
        fd, guest = memfd(0x4000, "OCSSD_GUARD_GUEST")
        memory = GuestMemory()
        memory.add(0x10000, memoryview(guest))
        image = memoryview(bytearray(0x2000))
        print(status_of(lambda: prp.transfer(memory, 0x10000, 0x11000, 0x1000, [image], False)))
        os.ftruncate(fd, 0x1000)   # the client shrinks its memory under the server
        print(status_of(lambda: prp.transfer(memory, 0x10000, 0x11000, 0x1000, [image], False)))
        print(status_of(lambda: prp.transfer(memory, 0x10000, 0x11000, 0x1000, [image], True)))
        print(lib.ocssd_guard_faults(lib.OCSSD_GUARD_GUEST) >= 2)
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["ok", "0x4", "0x4", "True"]


def test_image_truncated_under_a_copy_is_a_media_error() -> None:
    child = run("""
        fd, image = memfd(0x4000, "OCSSD_GUARD_IMAGE")
        memory = GuestMemory()
        memory.add(0x10000, bytearray(0x2000))
        device = memoryview(image)[0x2000:0x4000]
        os.ftruncate(fd, 0x1000)   # someone truncates the image file
        print(status_of(lambda: prp.transfer(memory, 0x10000, 0x11000, 0x1000, [device], True)))
        print(status_of(lambda: prp.transfer(memory, 0x10000, 0x11000, 0x1000, [device], False)))
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["0x4281", "0x4280"]


def test_python_access_to_a_watched_range_reads_zeroes_and_is_counted() -> None:
    child = run("""
        fd, image = memfd(0x4000, "OCSSD_GUARD_IMAGE")
        image[0x3000:0x3004] = b"abcd"
        os.ftruncate(fd, 0x1000)
        print(bytes(image[0x3000:0x3004]).hex(), lib.ocssd_guard_patched(lib.OCSSD_GUARD_IMAGE))
        image[0x3000:0x3004] = b"wxyz"   # lands on the zero page, not in the file
        print(bytes(image[0x3000:0x3004]).decode(), lib.ocssd_guard_patched(lib.OCSSD_GUARD_IMAGE))
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["00000000", "1", "wxyz", "1"]


def test_a_fault_outside_every_watched_range_still_ends_the_process() -> None:
    child = run("""
        fd, image = memfd(0x4000)
        os.ftruncate(fd, 0x1000)
        print(image[0x3000])
    """)
    assert child.returncode == -signal.SIGBUS


def test_a_guarded_copy_faulting_outside_watched_ranges_still_ends_the_process() -> None:
    # A stray pointer is a bug: the guard must not turn it into a status.
    child = run("""
        fd, image = memfd(0x4000)
        memory = GuestMemory()
        memory.add(0x10000, bytearray(0x2000))
        os.ftruncate(fd, 0x1000)
        print(status_of(lambda: prp.transfer(memory, 0x10000, 0x11000, 0x1000,
                                             [memoryview(image)[0x2000:0x4000]], True)))
    """)
    assert child.returncode == -signal.SIGBUS
