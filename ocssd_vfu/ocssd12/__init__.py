"""Open-Channel SSD 1.2: geometry and PPAs, the block table, bad blocks, the commands."""

from ocssd_vfu.ocssd12 import commands as _commands  # noqa: F401  (registers the kind)
