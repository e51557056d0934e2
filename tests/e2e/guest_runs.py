"""What the e2e tests share: a guest run on an image, file contents with known md5s, the
O_DIRECT read-back script, and parsers of md5sum and chunk-log output."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.conftest import Completed, RunCli

PATTERN_16M_MD5 = "4aaa6d94deae3b1bfcdafca57d8e8580"   # WRITE_PATTERN's 16 MiB
WRITE_PATTERN = 'yes "ocssd-vfu test pattern 0123456789" | head -c 16777216'
NUMBERS_2M_MD5 = "0976217c454e8f18bd98be2eed851939"    # seq 1 400000 | head -c 2097152

# Files are read back with O_DIRECT through pblk (the page cache would answer otherwise).
READ_BACK = "for f in {files}; do dd if=/mnt/$f bs=4096 iflag=direct 2>/dev/null | md5sum | " \
            "sed \"s|-|$f|\"; done\n"


def guest_on_image(ocssd_vfu: RunCli, image: Path, script: str, *guest_args: str,
                   timeout: str = "300") -> Completed:
    """`ocssd-vfu guest --image IMAGE` (its own server), which must succeed."""
    done = ocssd_vfu("guest", "--image", str(image), "--timeout", timeout, *guest_args,
                     script=script)
    assert done.status == 0, f"{done.stdout}\n{done.stderr}"
    return done


def md5s(stdout: str) -> dict[str, str]:
    """name -> md5 from md5sum lines."""
    return {m[2]: m[1] for m in re.finditer(r"^([0-9a-f]{32})  (\S+)$", stdout, re.M)}


def chunk_table(listing: str) -> dict[int, tuple[str, int]]:
    """index -> (state, write pointer), from `nvme lnvm chunk-log` or `image chunks` lines."""
    return {int(m[1]): (m[3], int(m[2], 16)) for m in re.finditer(
        r"^\s*\[\s*(\d+)\] \{ SLBA: 0x[0-9a-f]+, WP: 0x([0-9a-f]+), CNLB: 0x[0-9a-f]+, "
        r"State: (\w+)", listing, re.M)}


def state_counts(listing: str) -> dict[str, int]:
    return dict(Counter(state for state, _ in chunk_table(listing).values()))
