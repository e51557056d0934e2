"""Provisioning of the guest toolchain and the guest runner."""
