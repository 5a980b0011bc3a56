"""Server-side quota counters, the way a service might count: sliding, fixed or bucket.

The emulator counts each documented limit per app in its units (recipients,
targets or calls) with one of three policies, and independently records the
peak number of units seen in any window of the limit's length, whatever the
policy, so tests and benchmarks can compare what was sent with what was allowed.
"""

from __future__ import annotations

import abc
from collections import deque
from typing import Final, Literal, TypeAlias, final

from .._rates import Rate

__all__ = ["Counter", "PeakTracker", "Policy", "make_counter"]

Policy: TypeAlias = Literal["sliding", "fixed", "token_bucket"]
POLICIES: Final = ("sliding", "fixed", "token_bucket")


class Counter(abc.ABC):
    """Decides whether *units* more may be accepted at time *now*."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate

    @abc.abstractmethod
    def try_acquire(self, now: float, units: int) -> bool:
        """Accept and record the units, or refuse without recording anything."""


@final
class SlidingWindow(Counter):
    """At most ``limit`` units with start times in ``(now - per, now]``."""

    def __init__(self, rate: Rate) -> None:
        super().__init__(rate)
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0

    def try_acquire(self, now: float, units: int) -> bool:
        while self._log and self._log[0][0] <= now - self.rate.per:
            self._used -= self._log.popleft()[1]
        if self._used + units > self.rate.limit:
            return False
        self._log.append((now, units))
        self._used += units
        return True


@final
class FixedWindow(Counter):
    """At most ``limit`` units in each window ``[k * per, (k + 1) * per)``."""

    def __init__(self, rate: Rate) -> None:
        super().__init__(rate)
        self._window = -1
        self._used = 0

    def try_acquire(self, now: float, units: int) -> bool:
        window = int(now // self.rate.per)
        if window != self._window:
            self._window, self._used = window, 0
        if self._used + units > self.rate.limit:
            return False
        self._used += units
        return True


@final
class TokenBucket(Counter):
    """A bucket of ``limit`` tokens, full at first, refilled at ``limit / per`` a second."""

    def __init__(self, rate: Rate) -> None:
        super().__init__(rate)
        self._tokens = float(rate.limit)
        self._updated: float | None = None

    def try_acquire(self, now: float, units: int) -> bool:
        if self._updated is not None:
            refill = (now - self._updated) * self.rate.limit / self.rate.per
            self._tokens = min(float(self.rate.limit), self._tokens + refill)
        self._updated = now
        if units > self._tokens + 1e-9:
            return False
        self._tokens -= units
        return True


def make_counter(policy: Policy, rate: Rate) -> Counter:
    """The counter for *policy*."""
    if policy == "sliding":
        return SlidingWindow(rate)
    if policy == "fixed":
        return FixedWindow(rate)
    if policy == "token_bucket":
        return TokenBucket(rate)
    raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")


@final
class PeakTracker:
    """The most units accepted in any window of length ``per``.

    The busiest window can always be taken to end at an acceptance, so checking
    the window that ends at each one finds the peak exactly.
    """

    def __init__(self, per: float) -> None:
        self.per = per
        self.peak = 0
        self.total = 0
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0

    def record(self, now: float, units: int) -> None:
        """Record *units* accepted at *now*."""
        while self._log and self._log[0][0] <= now - self.per:
            self._used -= self._log.popleft()[1]
        self._log.append((now, units))
        self._used += units
        self.total += units
        self.peak = max(self.peak, self._used)
