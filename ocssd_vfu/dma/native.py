"""The DMA shim's cffi module (native/dma.c, native/fastpath.c and the guard around
their copies, native/guard.c), built at `pip install -e .` by native/build_dma.py;
it links nothing but libc."""

from __future__ import annotations

from ocssd_vfu.dma._native import ffi as ffi
from ocssd_vfu.dma._native import lib as lib

# SIGBUS/SIGSEGV in guest memory or the image fail a command, never the process
# (native/guard.h); installed with the module, in every process that can touch them.
if lib.ocssd_guard_install() < 0:
    raise OSError(ffi.errno, "installing the SIGBUS/SIGSEGV guard failed")
