"""`ocssd-vfu demo`: the main job, shown end to end in the guest.

Until the OCSSD device lands this boots the guest and shows what LightNVM
offers there; the OCSSD issue turns it into the pblk demo on a default image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ocssd_vfu.guest.runner import GuestRun, run_guest

DEMO_SCRIPT = """\
set -e
echo "== guest kernel $(uname -r)"
echo "== nvme lnvm info"
nvme lnvm info
echo "== nvme lnvm list"
nvme lnvm list
"""


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-demo-") as tmp:
        script = Path(tmp) / "demo.sh"
        script.write_text(DEMO_SCRIPT)
        return run_guest(GuestRun(script=script, timeout=300))
