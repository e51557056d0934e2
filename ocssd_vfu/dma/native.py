"""The DMA shim's cffi module (native/dma.c and native/fastpath.c), built at
`pip install -e .` by native/build_dma.py; it links nothing but libc."""

from __future__ import annotations

from ocssd_vfu.dma._native import ffi as ffi
from ocssd_vfu.dma._native import lib as lib
