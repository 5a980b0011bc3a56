"""How many requests a bulk path keeps in flight: what the quota needs at the latency measured.

A quota of ``limit`` units per ``per`` seconds, sent ``units`` a request, admits
``W = ceil(limit / units)`` requests a window. Two things ask for requests in flight:

- **the window**: a sliding window lets a whole window's quota start at once, and a
  fan-out that starts it at once finishes soonest (its last window is not spread over
  several round trips). Up to ``BURST`` requests a window, that many are kept in flight.
- **the round trip** (Little's law): to sustain ``W / per`` requests a second when each
  takes ``R`` seconds, ``W / per x R`` must be in flight. ``R`` is the recent round trip
  of the client's requests (:class:`RoundTrips`: smoothed, plus four deviations, as TCP
  estimates its retransmission timeout), with a quarter more for its variation.

The target is the larger, plus one, and never more than an explicit ``concurrency``.
Requests over the target wait here before they reach the limiter, so a quota that
could only queue them costs no connection and no memory.
"""

from __future__ import annotations

import math
from typing import Final, final

import anyio

__all__ = ["BURST", "MAX_IN_FLIGHT", "InFlight", "RoundTrips"]

#: Windows holding at most this many requests are started whole (fan-outs: 7 group
#: requests a second, 10 room requests, 10-19 user requests a minute).
BURST: Final = 20
#: The most requests in flight without an explicit ``concurrency``: the connections of
#: the client's own httpx pool (httpx's default).
MAX_IN_FLIGHT: Final = 100
#: Smoothing of the round-trip estimate (RFC 6298's alpha and beta).
_ALPHA: Final = 1 / 8
_BETA: Final = 1 / 4


@final
class RoundTrips:
    """The round trips of one client's requests, smoothed (RFC 6298)."""

    __slots__ = ("_deviation", "_smoothed")

    def __init__(self) -> None:
        self._smoothed: float | None = None
        self._deviation = 0.0

    def record(self, seconds: float) -> None:
        """One request's round trip: from the start of its sending to its answer."""
        if self._smoothed is None:
            self._smoothed, self._deviation = seconds, seconds / 2
            return
        self._deviation += _BETA * (abs(self._smoothed - seconds) - self._deviation)
        self._smoothed += _ALPHA * (seconds - self._smoothed)

    @property
    def high(self) -> float:
        """A round trip few requests exceed: smoothed plus four deviations (0 before any)."""
        if self._smoothed is None:
            return 0.0
        return self._smoothed + 4 * self._deviation


@final
class InFlight:
    """A gate that lets through as many requests at once as the quota needs.

    *limit* units per *per* seconds, *units* a request; *concurrency*, if given, is
    the most ever let through. Use it as ``async with in_flight:`` around a request.
    """

    __slots__ = ("_cap", "_changed", "_in_flight", "_per", "_round_trips", "_window")

    def __init__(
        self,
        round_trips: RoundTrips,
        *,
        limit: float,
        per: float,
        units: int = 1,
        concurrency: int | None = None,
    ) -> None:
        self._round_trips = round_trips
        self._window = max(1, math.ceil(limit / max(units, 1)))
        self._per = per
        self._cap = MAX_IN_FLIGHT if concurrency is None else concurrency
        self._in_flight = 0
        self._changed: anyio.Event | None = None

    @property
    def target(self) -> int:
        """How many requests may be in flight now."""
        little = self._window / self._per * self._round_trips.high * 1.25
        wanted = max(min(self._window, BURST), math.ceil(little)) + 1
        return max(1, min(self._cap, wanted))

    @property
    def cap(self) -> int:
        """The most requests ever let through at once: ``concurrency``, or ``MAX_IN_FLIGHT``."""
        return self._cap

    @property
    def in_flight(self) -> int:
        """How many requests are in flight now."""
        return self._in_flight

    async def acquire(self) -> None:
        """Wait until one more request may be in flight, and count it."""
        while self._in_flight >= self.target:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        self._in_flight += 1

    def release(self) -> None:
        """One request is no longer in flight."""
        self._in_flight -= 1
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
