"""`ocssd-vfu demo`: the main job end to end.

A default OCSSD 2.0 image (qemu-img's geometry: 2 groups x 8 PUs x 60 chunks x
4096 sectors, 15 GiB sparse) lives in the cache and is created once. The first
guest creates a pblk target on it, formats ext4 the first time only, writes a
new file and shows the chunks pblk opened; then the server and a second guest
start afresh and read every file back. Each `make demo` adds a file, so a new
run shows the files of the previous ones.

The first server also has a control socket: once QEMU attaches, the demo takes one chunk
OFFLINE at run time (`set-chunk-state`, as a failing die would), and the guest then sees
it in the chunk log and in the Chunk Notification log (D0h), while the demo prints the
events the control socket reported. pblk, created after that, leaves the chunk out.
"""

from __future__ import annotations

import re
import sys
import tempfile
import threading
from pathlib import Path

from ocssd_vfu.control.client import ControlClient, ControlError
from ocssd_vfu.geometry.ocssd20 import OcssdGeometry
from ocssd_vfu.guest.provision import cache_root
from ocssd_vfu.guest.runner import GuestRun, run_guest
from ocssd_vfu.media.ocssd_image import create_image

WRITER = """\
set -e
step() { echo; echo "== $*"; }
step "nvme lnvm list"; nvme lnvm list
step "nvme lnvm id-ns /dev/nvme0n1 (geometry)"; nvme lnvm id-ns /dev/nvme0n1 | sed -n '1,20p'
step "nvme lnvm create -d nvme0n1 -n demo -t pblk"; nvme lnvm create -d nvme0n1 -n demo -t pblk
dmesg | grep -E 'nvm: registered|pblk demo:' | sed 's/^\\[[ 0-9.]*\\] //'
magic=$(dd if=/dev/demo bs=1024 skip=1 count=1 2>/dev/null | od -An -tx1 -j56 -N2 | tr -d ' ')
if [ "$magic" != "53ef" ]; then
    step "first run: mkfs.ext4 /dev/demo"; mkfs.ext4 -q /dev/demo
fi
mount /dev/demo /mnt
n=$(ls /mnt | grep -c '^run-' || true); n=$((n + 1))
step "writing /mnt/run-$n (4 MiB)"
{ echo "ocssd_vfu demo run $n"; seq 1 1000000; } | head -c 4194304 > /mnt/run-$n
sync
step "files on pblk (md5)"; (cd /mnt && md5sum run-* | tee /results/before)
umount /mnt; nvme lnvm remove -n demo
step "chunks pblk opened (nvme lnvm chunk-log, FREE ones left out)"
nvme lnvm chunk-log /dev/nvme0n1 | grep -v 'State: FREE' | head -40
step "the chunk taken OFFLINE at run time (grp 1, pu 7, chk 59 = chunk 959)"
nvme lnvm chunk-log /dev/nvme0n1 | grep -F '[  959]'
step "the Chunk Notification log (nvme get-log --log-id=0xd0): NC, LBA, NSID, state, mask"
nvme get-log /dev/nvme0 --log-id=0xd0 --log-len=64
"""
# The chunk the demo takes OFFLINE through the control socket (the image's last one).
OFFLINE_CHUNK = {"grp": 1, "pu": 7, "chk": 59}

READER = """\
set -e
step() { echo; echo "== $*"; }
step "after a restart of the server and the guest: nvme lnvm create (recovers pblk)"
nvme lnvm create -d nvme0n1 -n demo -t pblk
mount /dev/demo /mnt
step "files read back with O_DIRECT (md5)"
cd /mnt
for f in run-*; do dd if=$f bs=4096 iflag=direct 2>/dev/null | md5sum | sed "s|-|$f|"; done \\
    | tee /results/after
head -1 run-*
cd /; umount /mnt; nvme lnvm remove -n demo
"""


def demo_image() -> Path:
    image = cache_root() / "demo" / "ocssd-default.img"
    if not image.exists():
        image.parent.mkdir(parents=True, exist_ok=True)
        create_image(image, OcssdGeometry())
        print(f"== created the default OCSSD 2.0 image {image} (15 GiB, sparse)")
    else:
        print(f"== using the demo image {image} (files from earlier runs are on it)")
    return image


def _inject(control: Path, report: list[str]) -> None:
    """Once QEMU attaches: take OFFLINE_CHUNK offline, and note what the socket says."""
    try:
        for _ in range(300):   # the server creates the socket a moment after it starts
            if control.is_socket():
                break
            threading.Event().wait(0.1)
        with ControlClient(control, timeout=120) as client:
            # The first CLIENT_ATTACHED is this client's own; then QEMU's.
            while client.wait_event("CLIENT_ATTACHED", timeout=120)["data"].get(
                    "client") != "vfio-user":
                pass
            client.execute("set-chunk-state", state="OFFLINE", **OFFLINE_CHUNK)
            report.append(f"set-chunk-state {OFFLINE_CHUNK} OFFLINE -> events: "
                          + str(client.wait_event("CHUNK_OFFLINE")["data"]) + ", "
                          + str(client.wait_event("CHUNK_NOTIFICATION")["data"]))
    except (OSError, TimeoutError, ControlError) as exc:
        report.append(f"the run-time injection did not happen: {exc}")


def _boot(tmp: Path, name: str, script: str, image: Path,
          control: Path | None = None) -> tuple[int, str]:
    path = tmp / f"{name}.sh"
    path.write_text(script)
    results = tmp / name
    results.mkdir()
    report: list[str] = []
    injector = None
    if control is not None:
        injector = threading.Thread(target=_inject, args=(control, report), daemon=True)
        injector.start()
    status = run_guest(GuestRun(script=path, timeout=900, images=[image], results=results,
                                serve_args=["--control", str(control)] if control else []))
    if injector is not None:
        injector.join(10)
        print("\n== the control socket: " + ("; ".join(report) or "no events"))
    sums = results / ("before" if name == "writer" else "after")
    return status, sums.read_text() if sums.exists() else ""


def main() -> int:
    image = demo_image()
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-demo-") as tmp:
        print("== boot 1: server + guest")
        status, before = _boot(Path(tmp), "writer", WRITER, image, Path(tmp) / "control.sock")
        if status:
            return status
        print("\n== boot 2: a new server and a new guest on the same image")
        status, after = _boot(Path(tmp), "reader", READER, image)
        if status:
            return status
    written = dict(re.findall(r"^([0-9a-f]{32})  (\S+)$", before, re.M))
    read = dict(re.findall(r"^([0-9a-f]{32})  (\S+)$", after, re.M))
    intact = written == read and bool(written)
    print(f"\n== {len(read)} file(s) read back after the restart; "
          f"{'all intact' if intact else 'MISMATCH'}")
    if not intact:
        print(f"before: {written}\nafter:  {read}", file=sys.stderr)
        return 1
    return 0
