"""Open-Channel SSD 2.0 namespaces: chunks (chunks.py, their state machine in
chunk_states.py), the namespace (namespace.py), its command table (commands.py,
registered on import) and the 2.0 test files (faults.py)."""

from ocssd_vfu.ocssd import commands as _commands  # noqa: F401  (registers the kind)
