"""`ocssd-vfu demo`: the main job end to end.

A default OCSSD 2.0 image (qemu-img's geometry: 2 groups x 8 PUs x 60 chunks x
4096 sectors, 15 GiB sparse) lives in the cache and is created once. The first
guest creates a pblk target on it, formats ext4 the first time only, writes a
new file and shows the chunks pblk opened; then the server and a second guest
start afresh and read every file back. Each `make demo` adds a file, so a new
run shows the files of the previous ones.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

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
"""

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


def _boot(tmp: Path, name: str, script: str, image: Path) -> tuple[int, str]:
    path = tmp / f"{name}.sh"
    path.write_text(script)
    results = tmp / name
    results.mkdir()
    status = run_guest(GuestRun(script=path, timeout=900, images=[image], results=results))
    sums = results / ("before" if name == "writer" else "after")
    return status, sums.read_text() if sums.exists() else ""


def main() -> int:
    image = demo_image()
    with tempfile.TemporaryDirectory(prefix="ocssd-vfu-demo-") as tmp:
        print("== boot 1: server + guest")
        status, before = _boot(Path(tmp), "writer", WRITER, image)
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
