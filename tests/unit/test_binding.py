"""The cffi binding loads the provisioned libvfio-user and drives it for real."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest

from ocssd_vfu.guest.provision import LIBVFIO_USER
from ocssd_vfu.vfu import binding


def test_binding_was_built_against_the_provisioned_library() -> None:
    assert str(LIBVFIO_USER.path()) == binding.LIBVFIO_USER_DIR


def test_context_listens_on_its_socket() -> None:
    workdir = Path(tempfile.mkdtemp(dir="/tmp"))
    path = workdir / "dev.sock"
    ctx = binding.create_socket_context(str(path))
    try:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert binding.lib.vfu_get_poll_fd(ctx) >= 0
        # Nobody has connected: a non-blocking attach says so.
        with pytest.raises(OSError) as err:
            binding.check(binding.lib.vfu_attach_ctx(ctx), "vfu_attach_ctx")
        assert err.value.errno == errno.EAGAIN
    finally:
        binding.lib.vfu_destroy_ctx(ctx)
        os.unlink(path)
        os.rmdir(workdir)
