"""Images made by the reference emulator (qemu-nvme b6fb7eb1e9), golden data for the
compatibility tests; tests/data/qemu-nvme-images/README.md says what is in them."""

from __future__ import annotations

import lzma
from pathlib import Path

IMAGES = Path(__file__).parent / "data" / "qemu-nvme-images"
FRESH_IMG_MD5 = "153e1cc08a99a4c26f424118699335ff"
WRITTEN_IMG_MD5 = "2eda42f9c2ff0d9b3f27dd75130bf536"
WRITTEN_FILES_MD5 = {
    "numbers.txt": "477d0e74aaccfc7f98f1c58ef7096ca8",
    "fives.txt": "45e43980196575d4abae1d787da6362b",
    "dir/hello.txt": "84239792e53d9cddaa2c88cf5c29a922",
}


def decompress(name: str, destination: Path) -> Path:
    """Unpack `name`.xz to `destination`, leaving zero blocks as holes."""
    block = 1 << 16
    with lzma.open(IMAGES / f"{name}.xz") as source, destination.open("wb") as target:
        while data := source.read(block):
            if data.count(0) == len(data):
                target.seek(len(data), 1)
            else:
                target.write(data)
        target.truncate()
    return destination
