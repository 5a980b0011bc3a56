"""Clocks for tests and for the emulator: virtual time, and real time sped up."""

from __future__ import annotations

import time
from typing import final

import anyio
import anyio.lowlevel

__all__ = ["MockClock", "ScaledClock"]


@final
class MockClock:
    """Virtual time that moves only when something sleeps on it, or when you move it.

    ``sleep(s)`` advances the clock by ``s`` at once. The client's limiter lets
    one waiter per limit sleep at a time, so its waits are exact and instant
    under this clock; ``advance`` moves time for everything else.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []
        """Every duration slept on this clock, in order."""

    def now(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by *seconds* and yield to the event loop once."""
        self.sleeps.append(seconds)
        self._now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by *seconds*."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds

    def __repr__(self) -> str:
        return f"MockClock(now={self._now!r})"


@final
class ScaledClock:
    """Real monotonic time multiplied by ``scale``: ``ScaledClock(60)`` runs a minute a second.

    Give the same scale to the emulator (``time_scale=60``) and this clock to the
    client (``clock=ScaledClock(60)``) and both count the documented quotas in
    the same sped-up time. It reads ``time.monotonic()``, not the event loop, so
    an emulator served from another thread or process agrees with it.
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = scale

    def now(self) -> float:
        """Scaled seconds since an arbitrary origin."""
        return time.monotonic() * self.scale

    async def sleep(self, seconds: float) -> None:
        """Sleep *seconds* of scaled time (``seconds / scale`` real seconds)."""
        await anyio.sleep(max(seconds, 0.0) / self.scale)

    def __repr__(self) -> str:
        return f"ScaledClock({self.scale!r})"
