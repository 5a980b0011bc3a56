"""Quotas counted in calls over long periods: the broadcasts' minutes, half hours and days.

The per-second quotas (``_window_rules.py``) are spent and earned back within a second or a
minute: a request that does not fit waits. A broadcast's are not. Broadcasting to every user
of an app is allowed once in 30 minutes and three times a day; to online users once a minute
and 50 times a day; to every chat room once a second, 10 times a minute and 100 times a day
(``beyond-seeds/broadcast_*.md``). A call that cannot fit must not wait for hours: it fails
at once with :class:`LimitReachedError`, which says when it could be made. A call that would
fit within ``BroadcastLimits.max_wait`` seconds waits for it.

Two kinds of rule, both per app:

- :class:`Rate` ``(limit, per)``: at most ``limit`` calls in any ``per + margin`` seconds
  (a sliding window, like the per-second quotas: the safer reading of "1 per 30 minutes";
  ``BroadcastLimits.margin``, a second by default, absorbs when the service counts a call
  later than it was reserved).
- :class:`DailyLimit` ``(limit)``: at most ``limit`` calls a calendar day. The pages do not
  say when a day starts over; a newer version of the vendor's limits page counts its periods
  in UTC, so a day is a UTC day unless ``BroadcastLimits.day_zone`` says otherwise.

Every process of an app must see every call, and a restarted process must remember them:
the client reserves a call here before sending it (:meth:`CallQuotas.reserve`), in memory
for one process (:class:`LocalCallQuotas`) or in Redis for all of them
(``_redis_call_quotas.py``, which mirrors :func:`decide` in Lua). A reservation is given
back only when the request certainly never reached the service; a call the service refused
for its daily limit marks the day spent for every process (:meth:`CallQuotas.exhaust`).
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timezone
from typing import Final, final

import anyio
import attrs

from ._clock import Clock, SystemClock
from ._exceptions import LimitReachedError
from ._rates import (
    BROADCAST_KINDS,
    BroadcastKind,
    BroadcastLimits,
    CallRule,
    DailyLimit,
    Rate,
)

__all__ = [
    "DAY",
    "CallQuotas",
    "LocalCallQuotas",
    "Reservation",
    "day_index",
    "decide",
    "describe",
    "kept_for",
]

#: Seconds in a day.
DAY: Final = 86_400
#: The shortest time a call's time is kept (a reservation can be given back meanwhile).
KEEP: Final = 60.0
_DESCRIBED: Final[Mapping[BroadcastKind, str]] = {
    "users": "broadcast to all users",
    "online_users": "broadcast to online users",
    "rooms": "broadcast to all chat rooms",
}


def describe(kind: BroadcastKind, rules: Sequence[CallRule], zone: timezone) -> str:
    """``"broadcast to all users: 1 per 1800 s, 3 a day (UTC days)"``."""
    parts = [
        f"{rule.limit} a day ({zone.tzname(None)} days)"
        if isinstance(rule, DailyLimit)
        else f"{rule.limit} per {rule.per:g} s"
        for rule in rules
    ]
    return f"{_DESCRIBED[kind]}: {', '.join(parts)}"


def day_index(now: float, offset: float) -> int:
    """The calendar day *now* (Unix seconds) falls in, for a zone *offset* s east of UTC."""
    return math.floor((now + offset) / DAY)


def decide(
    times: Sequence[float],
    spent_today: int,
    rules: Sequence[CallRule],
    *,
    now: float,
    margin: float,
    offset: float,
) -> float:
    """When a call may be made: *now* if it fits, else the earliest time it would.

    *times* are the earlier calls (Unix seconds, sorted), *spent_today* how many calls the
    day of *now* counted. ``_redis_call_quotas.lua`` mirrors this function.
    """
    at = now
    for rule in rules:
        if isinstance(rule, DailyLimit):
            if spent_today >= rule.limit:
                at = max(at, (day_index(now, offset) + 1) * DAY - offset)
            continue
        span = rule.per + margin
        recent = [t for t in times if t > now - span]
        if len(recent) >= rule.limit:
            # The call that must leave the window first for one more to fit.
            at = max(at, recent[len(recent) - rule.limit] + span)
    return at


def kept_for(rules: Sequence[CallRule], margin: float) -> float:
    """How long a call's time is kept: its longest sliding window, and at least a minute
    (while it is kept, a reservation can be given back)."""
    return max([KEEP, *(rule.per + margin for rule in rules if isinstance(rule, Rate))])


@final
@attrs.frozen
class Reservation:
    """A call reserved under a quota: kept when the call was (or may have been) made,
    given back (:meth:`CallQuotas.give_back`) only when it certainly was not."""

    kind: BroadcastKind
    id: str
    at: float


class CallQuotas(abc.ABC):
    """Where an app's long-period call quotas are counted: memory, or Redis."""

    def __init__(self, limits: BroadcastLimits, margin: float, clock: Clock) -> None:
        self._limits = limits
        self._margin = margin
        self._clock = clock

    @property
    def limits(self) -> BroadcastLimits:
        """The quotas counted."""
        return self._limits

    async def reserve(self, kind: BroadcastKind) -> Reservation:
        """Reserve one call of *kind*, waiting for it up to ``max_wait`` seconds.

        Raises:
            LimitReachedError: the call does not fit within ``max_wait``; nothing was
                reserved.
            LimiterUnavailableError, LimiterStoreError: a shared store failed.
        """
        rules = self._limits.rules(kind)
        while True:
            granted, now, at = await self.try_reserve(kind, rules)
            if granted is not None:
                return granted
            if at - now > self._limits.max_wait:
                raise LimitReachedError(
                    describe(kind, rules, self._limits.day_zone),
                    datetime.fromtimestamp(at, UTC),
                )
            await self._clock.sleep(at - now)

    @abc.abstractmethod
    async def try_reserve(
        self, kind: BroadcastKind, rules: Sequence[CallRule]
    ) -> tuple[Reservation | None, float, float]:
        """Reserve a call now if it fits, without waiting: (the reservation or ``None``,
        now, when it would fit)."""

    @abc.abstractmethod
    async def give_back(self, reservation: Reservation) -> None:
        """Forget *reservation*: its call certainly never reached the service."""

    @abc.abstractmethod
    async def exhaust(self, kind: BroadcastKind) -> None:
        """The service refused a call of *kind* for its daily limit: spend the rest of today."""

    @abc.abstractmethod
    async def spent(self, kind: BroadcastKind) -> tuple[int, int]:
        """(calls still kept, calls today) for *kind*, as of now (``kept_for``)."""


@final
class LocalCallQuotas(CallQuotas):
    """The call quotas of one process, in memory (forgotten when the process ends).

    *unix_time* gives the Unix time days are counted in: ``time.time`` on the system
    clock; on another clock (a test's, a ``ScaledClock``), the Unix time when the book was
    made, moving as the clock moves (as the emulator reads its clock). A test may pass
    its clock's ``now`` (a ``MockClock`` started at a Unix time).
    """

    def __init__(
        self,
        limits: BroadcastLimits,
        margin: float,
        clock: Clock | None = None,
        unix_time: Callable[[], float] | None = None,
    ) -> None:
        clock = clock or SystemClock()
        super().__init__(limits, margin, clock)
        if unix_time is None:
            if isinstance(clock, SystemClock):
                unix_time = time.time
            else:  # as the emulator reads its clock: Unix time now, moving as the clock does
                origin = time.time() - clock.now()
                unix_time = lambda: origin + clock.now()  # noqa: E731
        self._unix_time = unix_time
        self._times: dict[BroadcastKind, list[tuple[float, str]]] = {
            kind: [] for kind in BROADCAST_KINDS
        }
        self._days: dict[BroadcastKind, dict[int, int]] = {kind: {} for kind in BROADCAST_KINDS}
        self._ids = 0
        self._lock = anyio.Lock()

    def _forget(self, kind: BroadcastKind, now: float) -> None:
        kept = kept_for(self._limits.rules(kind), self._margin)
        self._times[kind] = [(t, i) for t, i in self._times[kind] if t > now - kept]
        today = day_index(now, self._limits.day_offset)
        self._days[kind] = {d: n for d, n in self._days[kind].items() if d >= today}

    async def try_reserve(
        self, kind: BroadcastKind, rules: Sequence[CallRule]
    ) -> tuple[Reservation | None, float, float]:
        async with self._lock:
            now = self._unix_time()
            self._forget(kind, now)
            today = day_index(now, self._limits.day_offset)
            times = [t for t, _ in self._times[kind]]
            at = decide(
                times,
                self._days[kind].get(today, 0),
                rules,
                now=now,
                margin=self._margin,
                offset=self._limits.day_offset,
            )
            if at > now:
                return None, now, at
            self._ids += 1
            reservation = Reservation(kind, str(self._ids), now)
            self._times[kind].append((now, reservation.id))
            self._days[kind][today] = self._days[kind].get(today, 0) + 1
            return reservation, now, now

    async def give_back(self, reservation: Reservation) -> None:
        async with self._lock:
            kind = reservation.kind
            self._forget(kind, self._unix_time())  # as the script does first
            kept = [(t, i) for t, i in self._times[kind] if i != reservation.id]
            if len(kept) == len(self._times[kind]):
                return  # given back already, or kept no longer
            self._times[kind] = kept
            day = day_index(reservation.at, self._limits.day_offset)
            if self._days[kind].get(day, 0) > 0:
                self._days[kind][day] -= 1

    async def exhaust(self, kind: BroadcastKind) -> None:
        async with self._lock:
            now = self._unix_time()
            limit = next(
                (r.limit for r in self._limits.rules(kind) if isinstance(r, DailyLimit)), None
            )
            if limit is not None:
                today = day_index(now, self._limits.day_offset)
                self._days[kind][today] = max(self._days[kind].get(today, 0), limit)

    async def spent(self, kind: BroadcastKind) -> tuple[int, int]:
        async with self._lock:
            now = self._unix_time()
            self._forget(kind, now)
            today = day_index(now, self._limits.day_offset)
            return len(self._times[kind]), self._days[kind].get(today, 0)
