"""The out-of-band (OOB) area both Open-Channel kinds keep beside the data: a
command's data moves first (dma.dptr.move resolves the OOB buffer and the data
pointer before a byte moves), then its OOB is scattered to, or gathered from, the
sectors that took data. Sectors that hold no data read as erased flash."""

from __future__ import annotations

import functools

from ocssd_vfu.dma.dptr import Metadata

OOB_UNWRITTEN = 0xFF  # erased-flash OOB for sectors that hold no data


@functools.cache
def filled_buffer(byte: int, size: int) -> memoryview:
    """A read-only buffer of `size` bytes `byte`, shared by every namespace."""
    return memoryview(bytes([byte]) * size)


def fill_from(target: memoryview, pattern: memoryview) -> None:
    """Fill `target` from the start of `pattern` (one byte repeated), in pieces."""
    step = len(pattern)
    for at in range(0, len(target), step):
        piece = target[at:at + step]
        piece[:] = pattern[:len(piece)]


def store_oob(target: memoryview, oob: Metadata | None, at: int, erased: memoryview) -> None:
    """The OOB of written sectors: the host's, from byte `at` of its buffer, or erased
    flash when the command carried none (MPTR 0)."""
    if oob is None:
        fill_from(target, erased)
    else:
        target[:] = oob.view[at:at + len(target)]
