"""Declared command arguments and their checks, with QEMU's wording for each mistake.

A command lists its `Arg`s once: `check_arguments` validates a client's `arguments`
object against them (unknown, missing, wrong type, out of range, not a choice) and
fills in defaults; `query-commands` and the docs read the same declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TYPE_NAMES = {int: "integer", str: "string", bool: "boolean"}


class ArgumentError(ValueError):
    """A bad argument; the message names it (QMP GenericError)."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


@dataclass(frozen=True)
class Arg:
    name: str
    type: type = int
    optional: bool = False
    default: Any = None
    low: int | None = None          # inclusive bounds of an integer
    high: int | None = None
    choices: tuple[str, ...] = ()   # the values a string may take
    help: str = ""

    def check(self, value: Any) -> Any:
        if not _has_type(value, self.type):
            raise ArgumentError(self.name, f"Invalid parameter type for '{self.name}', "
                                f"expected: {TYPE_NAMES[self.type]}")
        if self.choices and value not in self.choices:
            raise ArgumentError(self.name,
                                f"Parameter '{self.name}' does not accept value '{value}'")
        if self.type is int and not ((self.low is None or value >= self.low)
                                     and (self.high is None or value <= self.high)):
            raise ArgumentError(self.name, f"Parameter '{self.name}' out of range: {value} "
                                f"is not in {self.range_text()}")
        return value

    def range_text(self) -> str:
        low = "" if self.low is None else str(self.low)
        high = "" if self.high is None else str(self.high)
        return f"{low}..{high}"

    def describe(self) -> dict[str, Any]:
        """For query-commands' argument lists and the docs."""
        info: dict[str, Any] = {"name": self.name, "type": TYPE_NAMES[self.type],
                                "optional": self.optional}
        if self.optional and self.default is not None:
            info["default"] = self.default
        if self.low is not None or self.high is not None:
            info["range"] = self.range_text()
        if self.choices:
            info["choices"] = list(self.choices)
        return info


def _has_type(value: Any, expected: type) -> bool:
    # bool is an int in Python, not in JSON.
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def check_arguments(declared: tuple[Arg, ...], given: dict[str, Any]) -> dict[str, Any]:
    """The arguments with defaults filled in (absent optional ones without a default are
    left out), or an ArgumentError for the first problem in declaration order."""
    names = {arg.name for arg in declared}
    for key in given:
        if key not in names:
            raise ArgumentError(key, f"Parameter '{key}' is unexpected")
    checked: dict[str, Any] = {}
    for arg in declared:
        if arg.name in given:
            checked[arg.name] = arg.check(given[arg.name])
        elif not arg.optional:
            raise ArgumentError(arg.name, f"Parameter '{arg.name}' is missing")
        elif arg.default is not None:
            checked[arg.name] = arg.default
    return checked
