"""An OCSSD 2.0 geometry: its parameters, their sanity rules, and LBA packing.

Device LBAs pack the fields from bit 0 upward (OCSSD 2.0 §2.2, Linux
nvme_nvm_set_addr_20): sector | chunk << lbk_len | pu << (lbk_len + chk_len) |
group << (lbk_len + chk_len + pu_len). Each width is the minimal one for its
count, as qemu-nvme computes it (32 - clz(n - 1)), so with counts that are not
powers of two the address space is sparse and every field is range-checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ocssd_vfu.spec.ocssd import GEOMETRY_SIZE, MAX_VECTOR_LBAS, Geometry, Mccap

# The Linux 5.10 generic address format's field widths (lightnvm.h struct nvm_addr).
LINUX_FIELD_BITS = {"num_grp": 8, "num_pu": 8, "num_chk": 16, "num_sec": 24}


class GeometryError(ValueError):
    """An impossible geometry; the message names the field."""


def field_bits(count: int) -> int:
    return (count - 1).bit_length()


class ChunkAddress(NamedTuple):
    grp: int
    pu: int
    chk: int
    sec: int


@dataclass(frozen=True)
class OcssdGeometry:
    """What `image create` takes and the Geometry log page carries (§9 defaults)."""

    num_grp: int = 2
    num_pu: int = 8
    num_chk: int = 60
    num_sec: int = 4096        # CLBA
    sec_size: int = 4096
    md_size: int = 16
    ws_min: int = 4
    ws_opt: int = 8
    mw_cunits: int = 24
    mccap: int = 0
    maxoc: int = 0
    maxocpu: int = 0
    wit: int = 0
    trdt: int = 70000
    trdm: int = 100000
    twrt: int = 1900000
    twrm: int = 3500000
    tcrst: int = 3000000
    tcrsm: int = 3000000

    def __post_init__(self) -> None:
        self.validate()

    # -- derived ----------------------------------------------------------------------------
    @property
    def chunks(self) -> int:
        return self.num_grp * self.num_pu * self.num_chk

    @property
    def sectors(self) -> int:
        return self.chunks * self.num_sec

    @property
    def lens(self) -> tuple[int, int, int, int]:
        """Field widths: grp, pu, chk, lbk (the order of Geometry bytes 8-11)."""
        return (field_bits(self.num_grp), field_bits(self.num_pu), field_bits(self.num_chk),
                field_bits(self.num_sec))

    @property
    def address_bits(self) -> int:
        return sum(self.lens)

    def chunk_index(self, grp: int, pu: int, chk: int) -> int:
        """A chunk's position in the chunk log (group, then PU, then chunk order)."""
        return (grp * self.num_pu + pu) * self.num_chk + chk

    def chunk_position(self, index: int) -> tuple[int, int, int]:
        """(grp, pu, chk) of chunk log entry `index`."""
        pu_index, chk = divmod(index, self.num_chk)
        grp, pu = divmod(pu_index, self.num_pu)
        return grp, pu, chk

    # -- rules ------------------------------------------------------------------------------
    def validate(self) -> None:
        for name, limit in LINUX_FIELD_BITS.items():
            value = getattr(self, name)
            if not 1 <= value <= 1 << limit:
                raise GeometryError(f"{name}={value}: must be 1..{1 << limit} "
                                    f"(the address field has {limit} bits in Linux)")
        if self.sec_size < 512 or self.sec_size & (self.sec_size - 1):
            raise GeometryError(f"sec_size={self.sec_size}: must be a power of two >= 512")
        if not 0 <= self.md_size <= self.sec_size:
            raise GeometryError(f"md_size={self.md_size}: must be 0..sec_size ({self.sec_size})")
        if not 1 <= self.ws_min <= MAX_VECTOR_LBAS:
            raise GeometryError(f"ws_min={self.ws_min}: must be 1..{MAX_VECTOR_LBAS} "
                                "(a vector command carries at most 64 LBAs)")
        if not 1 <= self.ws_opt <= MAX_VECTOR_LBAS or self.ws_opt % self.ws_min:
            raise GeometryError(f"ws_opt={self.ws_opt}: must be a multiple of ws_min "
                                f"({self.ws_min}) and at most {MAX_VECTOR_LBAS}")
        if self.num_sec % self.ws_opt:
            raise GeometryError(f"ws_opt={self.ws_opt}: must divide num_sec ({self.num_sec})")
        if self.mccap & ~int(Mccap.MULTIPLE_RESETS):
            raise GeometryError(f"mccap={self.mccap:#x}: only bit 1 (multiple resets) is "
                                "supported (bit 0, vector copy, is not implemented; "
                                "bit 2 is set by the server when early reset is on)")
        for name in ("mw_cunits", "maxoc", "maxocpu", "trdt", "trdm", "twrt", "twrm",
                     "tcrst", "tcrsm"):
            value = getattr(self, name)
            if not 0 <= value < 1 << 32:
                raise GeometryError(f"{name}={value}: must fit in 32 bits")
        if not 0 <= self.wit < 256:
            raise GeometryError(f"wit={self.wit}: must be 0..255")
        if self.mw_cunits > self.num_sec:
            raise GeometryError(f"mw_cunits={self.mw_cunits}: must not exceed num_sec "
                                f"({self.num_sec})")

    def pblk_warnings(self) -> list[str]:
        """Valid for the device, but Linux's pblk will not run on it (ocssd-spec §4)."""
        warnings = []
        if self.sec_size != 4096:
            warnings.append(f"sec_size={self.sec_size}: pblk needs 4096")
        if self.num_chk <= 10:
            warnings.append(f"num_chk={self.num_chk}: pblk needs well over 10 chunks per PU")
        if self.md_size < 16 and (self.ws_opt < 2 or self.ws_opt * 16 > self.sec_size):
            warnings.append("md_size < 16 needs 2 <= ws_opt and ws_opt*16 <= sec_size for pblk")
        return warnings

    # -- the Geometry log page (E2h) ---------------------------------------------------------
    def to_bytes(self, early_reset: bool = False) -> bytes:
        """The Geometry page; `early_reset` adds qemu-nvme's MCCAP bit 2 (a device
        capability the server's --no-early-reset turns off, not part of the image)."""
        grp_len, pu_len, chk_len, lbk_len = self.lens
        fields: dict[str, Any] = {f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(self)}
        if early_reset:
            fields["mccap"] = self.mccap | Mccap.EARLY_RESET
        data = Geometry.build(dict(
            fields, mjr=2, mnr=0, clba=self.num_sec, vs=bytes(1024),
            lbaf=dict(grp_len=grp_len, pu_len=pu_len, chk_len=chk_len, lbk_len=lbk_len)))
        assert len(data) == GEOMETRY_SIZE
        return data

    @classmethod
    def from_bytes(cls, data: bytes, sec_size: int, md_size: int) -> OcssdGeometry:
        """Parse a stored Geometry page (the sector and OOB sizes live in the image header)."""
        g = Geometry.parse(data)
        if g.mjr != 2:
            raise GeometryError(f"geometry version {g.mjr}.{g.mnr}: only 2.x is an OCSSD 2.0 "
                                "geometry")
        names = {f.name for f in dataclasses.fields(cls)} - {"num_sec", "sec_size", "md_size"}
        geometry = cls(num_sec=g.clba, sec_size=sec_size, md_size=md_size,
                       **{name: g[name] for name in names})
        stored = (g.lbaf.grp_len, g.lbaf.pu_len, g.lbaf.chk_len, g.lbaf.lbk_len)
        if stored != geometry.lens:
            raise GeometryError(f"lbaf lengths {stored}: expected {geometry.lens} for "
                                f"{g.num_grp}x{g.num_pu}x{g.num_chk}x{g.clba}")
        return geometry


@dataclass(frozen=True)
class AddressFormat:
    """Packing and range checks of device LBAs for one geometry."""

    geometry: OcssdGeometry
    chk_shift: int = field(init=False)
    pu_shift: int = field(init=False)
    grp_shift: int = field(init=False)
    sec_mask: int = field(init=False)
    chk_mask: int = field(init=False)
    pu_mask: int = field(init=False)

    def __post_init__(self) -> None:
        _, pu_len, chk_len, lbk_len = self.geometry.lens
        for name, value in (("chk_shift", lbk_len), ("pu_shift", lbk_len + chk_len),
                            ("grp_shift", lbk_len + chk_len + pu_len),
                            ("sec_mask", (1 << lbk_len) - 1), ("chk_mask", (1 << chk_len) - 1),
                            ("pu_mask", (1 << pu_len) - 1)):
            object.__setattr__(self, name, value)

    def pack(self, grp: int, pu: int, chk: int, sec: int = 0) -> int:
        return sec | chk << self.chk_shift | pu << self.pu_shift | grp << self.grp_shift

    def unpack(self, lba: int) -> ChunkAddress:
        return ChunkAddress(lba >> self.grp_shift, (lba >> self.pu_shift) & self.pu_mask,
                            (lba >> self.chk_shift) & self.chk_mask, lba & self.sec_mask)

    def locate(self, lba: int) -> tuple[int, int] | None:
        """(chunk index, sector in chunk) of a device LBA, or None if a field is out of range."""
        g = self.geometry
        sec = lba & self.sec_mask
        chk = (lba >> self.chk_shift) & self.chk_mask
        pu = (lba >> self.pu_shift) & self.pu_mask
        grp = lba >> self.grp_shift
        if grp >= g.num_grp or pu >= g.num_pu or chk >= g.num_chk or sec >= g.num_sec:
            return None
        return g.chunk_index(grp, pu, chk), sec

    def chunk_lba(self, index: int) -> int:
        """The SLBA of chunk `index` (log page order)."""
        return self.pack(*self.geometry.chunk_position(index))
