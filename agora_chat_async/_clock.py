"""Time, behind a two-method interface so that time-dependent logic can be tested exactly.

Everything in this library that waits or measures time (the rate limiters, token
expiry) reads it from a :class:`Clock`. The default, :class:`SystemClock`, is the
monotonic clock of the running event loop (``anyio.current_time``). Tests inject
a clock whose time only moves when they move it.
"""

from __future__ import annotations

from typing import Protocol, final, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time in seconds and a way to wait for it to pass."""

    def now(self) -> float:
        """The current time in seconds; only differences between readings matter."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until at least *seconds* have passed on this clock."""
        ...


@final
class SystemClock:
    """The event loop's monotonic clock (``anyio.current_time()``) and ``anyio.sleep``."""

    def now(self) -> float:
        """The event loop's current time in seconds."""
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        """Sleep for *seconds* (no-op for zero or negative values, but still a checkpoint)."""
        await anyio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SystemClock)  # one event loop clock, however many objects

    def __hash__(self) -> int:
        return hash(SystemClock)
