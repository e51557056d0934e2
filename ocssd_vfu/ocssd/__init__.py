"""Open-Channel SSD 2.0: geometry, chunks, the image and the vector commands."""

from ocssd_vfu.ocssd import commands as _commands  # noqa: F401  (registers the kind)
