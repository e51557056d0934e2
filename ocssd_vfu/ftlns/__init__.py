"""The device-side FTL served as a namespace kind (`serve --mode ftl`): a plain NVM
namespace of 4 KiB blocks whose blocks live wherever the FTL (ocssd_vfu.ftl) put
them on the Open-Channel media of the image.

namespace.py holds the namespace over one Ftl, commands.py the kind's command
table (registered on FtlNamespace by importing this package), image.py how an
OCSSD image is opened, formatted or refused as an FTL (the mode-switch rules).
"""

from ocssd_vfu.ftlns import commands as _commands  # noqa: F401  (registers the kind)
