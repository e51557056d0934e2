# cffi's setuptools hook needs setup(); everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_dma.py:ffibuilder", "native/build_ffi.py:ffibuilder"])
