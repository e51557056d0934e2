"""An OCSSD 1.2 geometry: its parameters, their sanity rules, and PPA packing.

Physical page addresses pack the fields from bit 0 upward, as qemu-nvme's 1.2
device did (ocssd-spec §3.2): sector | plane | page | block | LUN | channel, each
field as wide as its count needs (32 - clz(n - 1)). The Identity's PPAF reports
exactly these offsets and widths, so Linux (generic_to_dev_addr) builds the same
addresses. With counts that are not powers of two the space is sparse and every
field is range-checked.

Linear positions used by the image and the namespace:
- block b = (ch * num_lun + lun) * num_blk + blk (a pblk "chunk": all planes)
- plane block = b * num_pln + pl (also the order of the bad-block table bytes)
- sector = ((b * num_pg + pg) * num_pln + pl) * sec_per_pg + sec, so a block's
  sectors lie in the order pblk writes them: page by page, every plane of a page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ocssd_vfu.geometry.ocssd20 import GeometryError, field_bits
from ocssd_vfu.spec.ocssd12 import (
    CAP_BAD_BLOCK_TABLE,
    IDENTITY_SIZE,
    MPOS_OF_PLANES,
    Identity,
)

# Linux 5.10's generic 1.2 address has a 4-bit sector field (lightnvm.h struct ppa_addr .g);
# with at most 4 planes a page of all planes is then at most 64 PPAs, one vector command.
LINUX_SEC_PER_PG = 16
U8, U16, U32 = 1 << 8, 1 << 16, 1 << 32


class PpaAddress(NamedTuple):
    ch: int
    lun: int
    blk: int
    pl: int
    pg: int
    sec: int


@dataclass(frozen=True)
class Ocssd12Geometry:
    """What `image create --spec 1.2` takes and the Identity (E2h) carries; defaults are
    qemu-ox's fixed geometry (ocssd-spec §10) with 16 bytes of OOB per sector."""

    num_ch: int = 8
    num_lun: int = 4
    num_pln: int = 2
    num_blk: int = 32
    num_pg: int = 128
    fpg_sz: int = 16384
    sec_size: int = 4096
    md_size: int = 16
    mtype: int = 0
    fmtype: int = 0
    mccap: int = 0
    cpar: int = 0
    trdt: int = 70000
    trdm: int = 100000
    tprt: int = 1900000
    tprm: int = 3500000
    tbet: int = 3000000
    tbem: int = 3000000

    def __post_init__(self) -> None:
        self.validate()

    # -- derived ----------------------------------------------------------------------------
    @property
    def sec_per_pg(self) -> int:
        return self.fpg_sz // self.sec_size

    @property
    def clba(self) -> int:
        """Sectors per block, all planes (Linux's chunk size)."""
        return self.sec_per_pg * self.num_pln * self.num_pg

    @property
    def luns(self) -> int:
        return self.num_ch * self.num_lun

    @property
    def blocks(self) -> int:
        return self.luns * self.num_blk

    @property
    def plane_blocks(self) -> int:
        return self.blocks * self.num_pln

    @property
    def sectors(self) -> int:
        return self.blocks * self.clba

    @property
    def mpos(self) -> int:
        return MPOS_OF_PLANES[self.num_pln]

    @property
    def ppaf(self) -> dict[str, int]:
        """Offsets and widths of the PPA fields (Identity bytes 12-23)."""
        lens = (("sec", field_bits(self.sec_per_pg)), ("pln", field_bits(self.num_pln)),
                ("pg", field_bits(self.num_pg)), ("blk", field_bits(self.num_blk)),
                ("lun", field_bits(self.num_lun)), ("ch", field_bits(self.num_ch)))
        fmt, offset = {}, 0
        for name, length in lens:
            fmt[f"{name}_offset"], fmt[f"{name}_len"] = offset, length
            offset += length
        return fmt

    def block_index(self, ch: int, lun: int, blk: int) -> int:
        return (ch * self.num_lun + lun) * self.num_blk + blk

    def block_position(self, index: int) -> tuple[int, int, int]:
        """(ch, lun, blk) of block `index`."""
        lun_index, blk = divmod(index, self.num_blk)
        ch, lun = divmod(lun_index, self.num_lun)
        return ch, lun, blk

    # -- rules ------------------------------------------------------------------------------
    def validate(self) -> None:
        for name, low, limit in (("num_ch", 1, U8), ("num_lun", 1, U8), ("num_blk", 1, U16),
                                 ("num_pg", 1, U16), ("fpg_sz", 1, U16), ("md_size", 0, U16),
                                 ("mtype", 0, U8), ("fmtype", 0, U8), ("cpar", 0, U16),
                                 ("mccap", 0, U32), ("trdt", 0, U32), ("trdm", 0, U32),
                                 ("tprt", 0, U32), ("tprm", 0, U32), ("tbet", 0, U32),
                                 ("tbem", 0, U32)):
            value = getattr(self, name)
            if not low <= value < limit:
                raise GeometryError(f"{name}={value}: must be {low}..{limit - 1} "
                                    "(the size of its Identity field)")
        if self.num_pln not in MPOS_OF_PLANES:
            raise GeometryError(f"num_pln={self.num_pln}: must be 1, 2 or 4 "
                                "(single, dual or quad plane)")
        if self.sec_size < 512 or self.sec_size & (self.sec_size - 1):
            raise GeometryError(f"sec_size={self.sec_size}: must be a power of two >= 512")
        if self.fpg_sz % self.sec_size:
            raise GeometryError(f"fpg_sz={self.fpg_sz}: must be a multiple of sec_size "
                                f"({self.sec_size})")
        if self.sec_per_pg > LINUX_SEC_PER_PG:
            raise GeometryError(f"fpg_sz={self.fpg_sz}: {self.sec_per_pg} sectors per page, "
                                f"Linux's sector field holds at most {LINUX_SEC_PER_PG}")
        if self.md_size > self.sec_size:
            raise GeometryError(f"md_size={self.md_size}: must be 0..sec_size ({self.sec_size})")

    def pblk_warnings(self) -> list[str]:
        """Valid for the device, but Linux or pblk will not run on it (ocssd-spec §3, §4)."""
        warnings = []
        if self.mtype:
            warnings.append(f"mtype={self.mtype}: Linux supports only NAND (0)")
        if self.sec_size != 4096:
            warnings.append(f"sec_size={self.sec_size}: pblk needs 4096")
        for name in ("num_ch", "num_lun"):
            value = getattr(self, name)
            if value & (value - 1):
                warnings.append(f"{name}={value}: pblk needs a power of two")
        if self.num_blk <= 10:
            warnings.append(f"num_blk={self.num_blk}: pblk needs well over 10 blocks per LUN")
        if self.md_size < 16 and self.sec_per_pg * self.num_pln < 2:
            warnings.append("md_size < 16 needs at least 2 sectors per page of all planes "
                            "for pblk")
        return warnings

    # -- the Identity page (E2h) -------------------------------------------------------------
    def to_bytes(self) -> bytes:
        fields: dict[str, Any] = {f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(self)}
        data = Identity.build(dict(
            fields, ver_id=1, vmnt=0, cgrps=1, cap=CAP_BAD_BLOCK_TABLE, dom=0,
            ppaf=self.ppaf, csecs=self.sec_size, sos=self.md_size, mpos=self.mpos))
        assert len(data) == IDENTITY_SIZE
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Ocssd12Geometry:
        ident = Identity.parse(data)
        if ident.ver_id != 1:
            raise GeometryError(f"identity version {ident.ver_id}: an OCSSD 1.2 identity has 1")
        if ident.cgrps != 1:
            raise GeometryError(f"cgrps {ident.cgrps}: only one configuration group exists")
        names = {f.name for f in dataclasses.fields(cls)} - {"sec_size", "md_size"}
        geometry = cls(sec_size=ident.csecs, md_size=ident.sos,
                       **{name: ident[name] for name in names})
        stored = {key: ident.ppaf[key] for key in geometry.ppaf}
        if stored != geometry.ppaf:
            raise GeometryError(f"ppaf {stored}: expected {geometry.ppaf} for this geometry")
        if ident.mpos != geometry.mpos:
            raise GeometryError(f"mpos {ident.mpos:#x}: expected {geometry.mpos:#x} for "
                                f"{geometry.num_pln} plane(s)")
        return geometry


@dataclass(frozen=True)
class PpaFormat12:
    """Packing and range checks of 1.2 PPAs for one geometry (precomputed for the hot path)."""

    geometry: Ocssd12Geometry
    shifts: tuple[int, ...] = field(init=False)   # sec, pln, pg, blk, lun, ch offsets
    masks: tuple[int, ...] = field(init=False)    # sec, pln, pg, blk, lun widths as masks

    def __post_init__(self) -> None:
        f = self.geometry.ppaf
        names = ("sec", "pln", "pg", "blk", "lun", "ch")
        object.__setattr__(self, "shifts", tuple(f[f"{n}_offset"] for n in names))
        object.__setattr__(self, "masks", tuple((1 << f[f"{n}_len"]) - 1 for n in names))

    def pack(self, ch: int, lun: int, blk: int, pg: int, pl: int = 0, sec: int = 0) -> int:
        s = self.shifts
        return sec << s[0] | pl << s[1] | pg << s[2] | blk << s[3] | lun << s[4] | ch << s[5]

    def unpack(self, ppa: int) -> PpaAddress:
        s, m = self.shifts, self.masks
        return PpaAddress(ppa >> s[5], (ppa >> s[4]) & m[4], (ppa >> s[3]) & m[3],
                          (ppa >> s[1]) & m[1], (ppa >> s[2]) & m[2], ppa & m[0])

    def locate(self, ppa: int) -> tuple[int, int, int, int] | None:
        """(block, page, plane, sector) of a PPA, or None if a field is out of range."""
        g = self.geometry
        s, m = self.shifts, self.masks
        sec, pl, pg = ppa & m[0], (ppa >> s[1]) & m[1], (ppa >> s[2]) & m[2]
        blk, lun, ch = (ppa >> s[3]) & m[3], (ppa >> s[4]) & m[4], ppa >> s[5]
        if (ch >= g.num_ch or lun >= g.num_lun or blk >= g.num_blk or pg >= g.num_pg
                or pl >= g.num_pln or sec >= g.sec_per_pg):
            return None
        return (ch * g.num_lun + lun) * g.num_blk + blk, pg, pl, sec
