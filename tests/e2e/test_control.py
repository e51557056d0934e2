"""The control plane with a Linux 5.10 guest, in one boot: a write failure injected
through the control socket while pblk writes (pblk's write_failed counter moves, the data
reads back intact), and a chunk worn out by --pe-cycles (WLI 255 and OFFLINE in
`nvme lnvm chunk-log`, an entry in the Chunk Notification log D0h, a CHUNK_OFFLINE event).
The device is started with the Python API and the pytest plugin's image fixture."""

from __future__ import annotations

import re
import threading

import pytest

from ocssd_vfu.api import served_device
from ocssd_vfu.pytest_plugin import ImageFactory
from tests.conftest import Completed, RunCli
from tests.e2e.guest_runs import chunk_table

pytestmark = pytest.mark.e2e

# 4 groups x 2 PUs x 24 chunks x 1024 sectors; MCCAP bit 1: a FREE chunk may be reset.
GEOMETRY = {"num_grp": 4, "num_pu": 2, "num_chk": 24, "num_sec": 1024, "mccap": 0x2}
# The worn chunk: grp 3, pu 1, chk 23 = LBA 3 << 16 | 1 << 15 | 23 << 10, chunk-log index 191.
WORN_LBA, WORN_INDEX = 0x3DC00, 191

SCRIPT = f"""\
nvme lnvm create -d nvme0n1 -n x -t pblk
yes "ocssd-vfu control plane" | head -c 16777216 > /tmp/pattern
dd if=/tmp/pattern of=/dev/x bs=1M oflag=direct 2>/dev/null
sync
echo "errors: $(cat /sys/block/x/pblk/errors)"
dd if=/dev/x bs=1M count=16 iflag=direct 2>/dev/null | md5sum | sed 's/-/device/'
md5sum /tmp/pattern | sed 's,/tmp/,,'
nvme lnvm remove -n x
for i in 1 2 3 4; do
    nvme io-passthru /dev/nvme0n1 --opcode=0x90 --namespace-id=1 --cdw10={WORN_LBA} \\
        --cdw11=0 --cdw12=0 >/dev/null 2>&1 && echo "reset $i: ok" || echo "reset $i: failed"
done
nvme lnvm chunk-log /dev/nvme0n1 | grep -F '[  {WORN_INDEX}]'
nvme get-log /dev/nvme0 --log-id=0xd0 --log-len=4096
"""


def d0h_entries(stdout: str) -> list[tuple[int, int, int, int, int]]:
    """(nc, lba, nsid, state, mask) of every posted entry in nvme-cli's hex dump."""
    data = bytes.fromhex("".join(
        m[1] for m in re.finditer(r"^\s*[0-9a-f]+:((?: [0-9a-f]{2})+)", stdout, re.M)))
    entries = []
    for at in range(0, len(data) - 63, 64):
        nc = int.from_bytes(data[at:at + 8], "little")
        if nc:
            entries.append((nc, int.from_bytes(data[at + 8:at + 16], "little"),
                            int.from_bytes(data[at + 16:at + 20], "little"),
                            int.from_bytes(data[at + 20:at + 22], "little"), data[at + 22]))
    return entries


def test_injected_write_failure_and_worn_out_chunk(ocssd_vfu: RunCli,
                                                   ocssd_image_factory: ImageFactory) -> None:
    image = ocssd_image_factory(**GEOMETRY)
    with served_device(image, pe_cycles=3) as device:
        assert device.control is not None
        done: list[Completed] = []
        guest = threading.Thread(target=lambda: done.append(ocssd_vfu(
            "guest", "--socket", str(device.socket), "--timeout", "500", script=SCRIPT)))
        guest.start()
        try:
            # The first CLIENT_ATTACHED is the control client's own; then QEMU's.
            while device.control.wait_event("CLIENT_ATTACHED", timeout=120)["data"][
                    "client"] != "vfio-user":
                pass
            for chk in range(4):   # pblk's first data line is one of the first chunks
                device.control.execute("inject-fault", op="write", grp=0, pu=0, chk=chk,
                                       sec=100, count=1)
        finally:
            guest.join(600)
        assert done and done[0].status == 0, done and f"{done[0].stdout}\n{done[0].stderr}"
        out = done[0].stdout
        errors = re.search(r"^errors: .*write_failed=(\d+)", out, re.M)
        assert errors is not None, out
        assert int(errors[1]) >= 1                              # pblk saw the failure
        sums = {name: digest
                for digest, name in re.findall(r"^([0-9a-f]{32})\s+(\S+)$", out, re.M)}
        assert sums["device"] == sums["pattern"], out
        assert re.findall(r"^reset (\d): (\w+)$", out, re.M) == [
            ("1", "ok"), ("2", "ok"), ("3", "ok"), ("4", "failed")]
        assert chunk_table(out)[WORN_INDEX] == ("OFFLINE", 0xFFFF)
        assert re.search(rf"\[\s*{WORN_INDEX}\].*WLI:\s+255 \}}", out), out
        assert any(entry[1:] == (WORN_LBA, 1, 0x100, 0x2) for entry in d0h_entries(out)), out
        while True:
            event = device.control.wait_event("CHUNK_OFFLINE", timeout=10)
            if event["data"]["reason"] == "worn-out":
                break
        assert event["data"] == {"grp": 3, "pu": 1, "chk": 23, "reason": "worn-out"}
