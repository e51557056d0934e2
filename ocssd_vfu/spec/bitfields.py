"""Bitfields of a register or a command dword, declared once, low bits first.

Each field is (name, width); names starting with "_" are reserved. `parse` and
`build` go through construct (the cold path, and the tests); `get`, `mask` and
`shift` give what hot-path code needs, derived from the same declaration.
"""

from __future__ import annotations

from construct import BitsInteger, BitStruct, ByteSwapped, Container


class Bitfields:
    """The bitfields of one 32- or 64-bit little-endian value, low bits first."""

    def __init__(self, *fields: tuple[str, int]) -> None:
        self.bits = sum(width for _, width in fields)
        assert self.bits in (32, 64), fields
        self.fields = fields
        self.struct = ByteSwapped(BitStruct(*(name / BitsInteger(width)
                                             for name, width in reversed(fields))))
        self.shifts: dict[str, tuple[int, int]] = {}
        at = 0
        for name, width in fields:
            self.shifts[name] = (at, (1 << width) - 1)
            at += width

    def parse(self, value: int) -> Container:
        return self.struct.parse(value.to_bytes(self.bits // 8, "little"))

    def build(self, **values: int) -> int:
        every = {name: values.pop(name, 0) for name, _ in self.fields}
        assert not values, f"no such fields: {values}"
        return int.from_bytes(self.struct.build(every), "little")

    def get(self, value: int, name: str) -> int:
        shift, mask = self.shifts[name]
        return (value >> shift) & mask

    def shift(self, name: str) -> int:
        return self.shifts[name][0]

    def mask(self, name: str) -> int:
        """The field's bits in place."""
        shift, mask = self.shifts[name]
        return mask << shift

    def put(self, value: int, name: str, field: int) -> int:
        """`value` with the field set to `field`."""
        shift, mask = self.shifts[name]
        return (value & ~(mask << shift)) | (field & mask) << shift


def reserved(width: int, at: int) -> tuple[str, int]:
    return (f"_reserved{at}", width)


def fields_mask(layout: Bitfields) -> int:
    """Every bit of the layout's named (not reserved) fields."""
    return sum(layout.mask(name) for name, _ in layout.fields if not name.startswith("_"))
