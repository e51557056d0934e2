"""Plain NVM namespaces (a raw file of blocks): the smallest namespace kind.

namespace.py holds the blocks, commands.py the kind's command table (which it
registers on PlainNamespace, so importing this package is enough), fastpath.py
the C path for plain Reads and Writes.
"""

from ocssd_vfu.plain import commands as _commands  # noqa: F401  (registers the kind)
