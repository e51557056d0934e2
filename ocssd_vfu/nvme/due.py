"""Callbacks held until a time (ns): the controller's held completions (sans-I/O: the
caller passes `now`). timing/scheduler.py wakes the shell's loop at `next_due()`."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

Completion = Callable[[], None]


class DueQueue:
    """Callbacks ordered by due time (ns), then by the order they were added."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Completion]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due_ns: int, callback: Completion) -> None:
        heapq.heappush(self._heap, (due_ns, next(self._order), callback))

    def next_due(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self, now_ns: int) -> int:
        """Call every callback due by `now_ns`, earliest first (callbacks may add more);
        return how many ran."""
        ran = 0
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            heapq.heappop(heap)[2]()
            ran += 1
        return ran

    def clear(self) -> None:
        self._heap.clear()
