"""Typed facade over the cffi module: -1/errno becomes OSError."""

from __future__ import annotations

import os
from typing import Any

from ocssd_vfu.vfu._libvfio_user import ffi as ffi
from ocssd_vfu.vfu._libvfio_user import lib as lib

LIBVFIO_USER_DIR: str = ffi.string(lib.LIBVFIO_USER_DIR).decode()

# SIGBUS/SIGSEGV in guest memory or the image fail a command, never the process
# (native/guard.h); installed with the module, in every process that can touch them.
if lib.ocssd_guard_install() < 0:
    raise OSError(ffi.errno, "installing the SIGBUS/SIGSEGV guard failed")


def check(result: int, what: str) -> int:
    """Turn libvfio-user's `-1 and errno` convention into OSError."""
    if result < 0:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def create_socket_context(path: str, private: Any = ffi.NULL) -> Any:
    """A non-blocking vfio-user PCI context listening on `path`."""
    ctx = lib.vfu_create_ctx(lib.VFU_TRANS_SOCK, path.encode(), lib.LIBVFIO_USER_FLAG_ATTACH_NB,
                             private, lib.VFU_DEV_TYPE_PCI)
    if ctx == ffi.NULL:
        err = ffi.errno
        raise OSError(err, f"vfu_create_ctx({path}): {os.strerror(err)}")
    return ctx
