"""Guest memory and the DMA shim: the layer below the NVMe core.

memory.py holds the regions the host mapped (a bytearray in tests), prp.py and
dptr.py move a command's data and metadata (PRPs, SGLs) through the C shim
(native/dma.c, which resolves every guest address before it copies a byte), and
reference.py holds the same walks in Python, the oracles the shim is tested
against. The cffi module (`_native`, built from native/dma.c and
native/fastpath.c by native/build_dma.py) needs a C compiler only, no
libvfio-user: the controller and its tests run without the vfio-user shell.
"""
