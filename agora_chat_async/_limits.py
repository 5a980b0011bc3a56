"""Rate limits: what the service allows, and the limiter that keeps the client inside it.

What is limited, and in which units
-----------------------------------
The reference pages document one quota per app key for each endpoint family:

========  =================================  ==========================================
name      endpoint                           default
========  =================================  ==========================================
users     ``POST /messages/users``           6000 recipients per 60 s (600 per request)
groups    ``POST /messages/chatgroups``      20 target groups per second (3 per request)
rooms     ``POST /messages/chatrooms``       100 target rooms per second (10 per request)
other     every other endpoint               100 calls per second
========  =================================  ==========================================

Units are recipients or targets, not requests: one send to 3 groups costs 3 of the
20 group units of that second. The English page says "20 messages to a chat
group" per second, which reads as per group; the Chinese page counts per app. We
count per app, the stricter reading (see ``docs/design.md``).

The guarantee
-------------
:class:`SlidingWindowLimiter` keeps, for each limit, a log of the units it let
start and when. A request of ``n`` units starts only when the units started in
the last ``per`` seconds plus ``n`` are at most ``limit``. So in no interval of
length ``per`` does the client start more than ``limit`` units, whether the
service counts a sliding window, fixed windows or a token bucket. A request of
more units than the limit can never start and is refused at once with
:class:`ValidationError`.

Fairness and cancellation
-------------------------
Waiters are admitted strictly first come, first served: each limit has a FIFO
lock, and only its holder waits for capacity. A 600-unit batch is therefore not
starved by a stream of 1-unit sends, and a 1-unit send waits at most for the
capacity ahead of it. A waiter that is cancelled leaves the queue without
having recorded anything, so cancellation never leaks capacity.

Memory is bounded by the limit: every log entry holds at least one unit, and
entries older than ``per`` are dropped.
"""

from __future__ import annotations

import abc
from collections import deque
from typing import Any, Final, Literal, final

import anyio
import attrs

from ._clock import Clock, SystemClock
from ._exceptions import ValidationError

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "LimitName",
    "Limiter",
    "Rate",
    "RateLimits",
    "SlidingWindowLimiter",
]

LimitName = Literal["users", "groups", "rooms", "other"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValidationError(attribute.name, f"must be greater than zero, got {value!r}")


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int:
        raise ValidationError(attribute.name, f"must be an int, got {value!r}")
    _positive(instance, attribute, value)


@final
@attrs.frozen
class Rate:
    """At most ``limit`` units in any interval of ``per`` seconds.

    >>> Rate(6000, per=60)
    Rate(limit=6000, per=60)
    """

    limit: int = attrs.field(validator=_positive_int)
    per: float = attrs.field(validator=_positive)


@final
@attrs.frozen(kw_only=True)
class RateLimits:
    """The documented per-app-key limits, one :class:`Rate` per endpoint family.

    The defaults are the documented quotas. Lower them when the app key is
    shared with another service::

        RateLimits(users=Rate(3000, per=60))
    """

    users: Rate = Rate(6000, per=60)
    groups: Rate = Rate(20, per=1)
    rooms: Rate = Rate(100, per=1)
    other: Rate = Rate(100, per=1)

    def rate(self, name: LimitName) -> Rate:
        """The :class:`Rate` for the limit called *name*."""
        rate: Rate = getattr(self, name)
        return rate


#: The documented quotas: 6000 users a minute; 20 groups, 100 rooms, 100 other calls a second.
DEFAULT_RATE_LIMITS: Final = RateLimits()


class Limiter(abc.ABC):
    """Admits units of work so that the configured rates are never exceeded.

    The client calls :meth:`acquire` once before each request. Implementations
    must be safe to share between tasks of one event loop.
    """

    @abc.abstractmethod
    async def acquire(self, name: LimitName, units: int) -> None:
        """Wait until *units* units may start under the limit *name*, and record them.

        Raises:
            ValidationError: *units* exceeds the limit itself, so it could never start.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most limiters hold nothing
        """Release resources held by the limiter (none for the in-memory one)."""


@attrs.define
class _Window:
    rate: Rate
    lock: anyio.Lock = attrs.field(factory=anyio.Lock)
    log: deque[tuple[float, int]] = attrs.field(factory=deque)
    used: int = 0

    def delay(self, now: float, units: int) -> float:
        """Seconds until *units* more may start; 0 when they may start now."""
        per, log = self.rate.per, self.log
        while log and log[0][0] <= now - per:
            self.used -= log.popleft()[1]
        excess = self.used + units - self.rate.limit
        if excess <= 0:
            return 0.0
        freed = 0
        for started, amount in log:
            freed += amount
            if freed >= excess:
                return started + per - now
        raise AssertionError("unreachable: units <= limit was checked")  # pragma: no cover

    def record(self, now: float, units: int) -> None:
        self.log.append((now, units))
        self.used += units


@final
class SlidingWindowLimiter(Limiter):
    """The in-memory limiter: exact sliding windows, FIFO admission, injectable clock.

    Args:
        rate_limits: the rates to enforce; defaults to :data:`DEFAULT_RATE_LIMITS`.
        clock: where time comes from; defaults to the event loop's clock.
    """

    __slots__ = ("_clock", "_rate_limits", "_windows")

    def __init__(
        self, rate_limits: RateLimits | None = None, *, clock: Clock | None = None
    ) -> None:
        self._rate_limits = rate_limits or DEFAULT_RATE_LIMITS
        self._clock: Clock = clock or SystemClock()
        self._windows: dict[str, _Window] = {}

    @property
    def rate_limits(self) -> RateLimits:
        """The rates this limiter enforces."""
        return self._rate_limits

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter({self._rate_limits!r})"

    async def acquire(self, name: LimitName, units: int) -> None:
        """Wait, first come first served, until *units* may start under *name*.

        Raises:
            ValidationError: *units* is not positive or exceeds the limit itself.
        """
        rate = self._rate_limits.rate(name)
        if not 0 < units <= rate.limit:
            raise ValidationError(
                "units",
                f"{units} units can never start under the {name!r} limit of "
                f"{rate.limit} per {rate.per:g} s; send smaller batches",
            )
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = _Window(rate)
        async with window.lock:
            while True:
                now = self._clock.now()
                delay = window.delay(now, units)
                if delay <= 0:
                    window.record(now, units)
                    return
                await self._clock.sleep(delay)
