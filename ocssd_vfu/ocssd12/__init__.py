"""Open-Channel SSD 1.2 namespaces: the block table (blocks.py, what each bad-block
value allows in block_states.py), the namespace (namespace.py), its command table
(commands.py, registered on import) and the 1.2 bad-block and fault files
(bad_blocks.py)."""

from ocssd_vfu.ocssd12 import commands as _commands  # noqa: F401  (registers the kind)
