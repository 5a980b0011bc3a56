"""A set of input positions kept as sorted, disjoint ranges: small however large the input.

A fan-out's progress is recorded as positions of its input (0, 1, 2, ...), and positions
finish in runs (a request's recipients are consecutive, and requests finish roughly in
order), so a million finished positions are a handful of ``[start, end)`` pairs.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from typing import final

__all__ = ["Ranges"]


@final
class Ranges:
    """Positions as sorted, disjoint, non-adjacent ``[start, end)`` ranges."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in pairs:
            self.add_range(start, end)

    def __contains__(self, position: object) -> bool:
        if not isinstance(position, int):
            return False
        index = bisect_right(self._starts, position) - 1
        return index >= 0 and position < self._ends[index]

    def __len__(self) -> int:
        return sum(end - start for start, end in zip(self._starts, self._ends, strict=True))

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends, strict=True):
            yield from range(start, end)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ranges) and self.pairs() == other.pairs()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ranges({self.pairs()!r})"

    def pairs(self) -> list[tuple[int, int]]:
        """The ranges, in order."""
        return list(zip(self._starts, self._ends, strict=True))

    def add(self, position: int) -> None:
        """Add one position."""
        self.add_range(position, position + 1)

    def add_range(self, start: int, end: int) -> None:
        """Add the positions ``start <= p < end``."""
        if start >= end:
            return
        # Every range that overlaps or touches [start, end) merges with it.
        first = bisect_right(self._ends, start - 1)
        if first < len(self._starts) and self._starts[first] <= start:
            start = self._starts[first]
        last = bisect_right(self._starts, end) - 1
        if last >= first:
            end = max(end, self._ends[last])
        self._starts[first : last + 1] = [start]
        self._ends[first : last + 1] = [end]

    def discard(self, position: int) -> None:
        """Remove one position, if it is in the set."""
        index = bisect_right(self._starts, position) - 1
        if index < 0 or position >= self._ends[index]:
            return
        start, end = self._starts[index], self._ends[index]
        pieces = [(a, b) for a, b in ((start, position), (position + 1, end)) if a < b]
        self._starts[index : index + 1] = [a for a, _ in pieces]
        self._ends[index : index + 1] = [b for _, b in pieces]

    def update(self, positions: Iterable[int]) -> None:
        """Add every position of *positions*."""
        for position in positions:
            self.add(position)

    def clear(self) -> None:
        """Remove every position."""
        self._starts.clear()
        self._ends.clear()
