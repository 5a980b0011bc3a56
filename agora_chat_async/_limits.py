"""Rate limits: what the service allows, and the limiter that keeps the client inside it.

What is limited, and in which units
-----------------------------------
The reference pages document one quota per app key for each endpoint family:

==========  ================================  =========================================
name        endpoint                          default
==========  ================================  =========================================
users       ``POST /messages/users``          6000 recipients per 60 s (600 per request)
groups      ``POST /messages/chatgroups``     20 target groups per second (3 per request)
rooms       ``POST /messages/chatrooms``      100 target rooms per second (10 per request)
send_calls  each of the three send endpoints  100 calls per second
other       every other endpoint              100 calls per second
==========  ================================  =========================================

Units are recipients or targets, not requests: one send to 3 groups costs 3 of the
20 group units of that second. The English page says "20 messages to a chat
group" per second, which reads as per group; the Chinese page counts per app. We
count per app, the stricter reading (see ``docs/design.md``). The English page
also gives the send endpoints a call rate of 100 a second; ``send_calls`` is one
limit shared by the three of them (again the stricter reading).

A request carries a list of *claims*, one per limit it must respect: a user send
of 380 recipients claims ``[("users", 380), ("send_calls", 1)]``; a recall claims
``[("other", 1)]``. It starts only when every claim fits.

The guarantee
-------------
:class:`SlidingWindowLimiter` keeps, for each limit, a log of the units it let
start and when. A claim of ``n`` units fits when the units started in the last
``per + margin`` seconds plus ``n`` are at most the limit. So in no interval of
length ``per`` does the client start more than ``limit`` units, whether the
service counts a sliding window, fixed windows or a token bucket. ``margin``
(seconds, configurable) widens every window a little so that network jitter
between the client's start and the server's count cannot squeeze two windows'
worth of requests into one. A claim larger than the limit can never start and
is refused at once with :class:`ValidationError`.

A sender's first claim may shrink (``min_units``): when the window has room for
part of a batch, that part starts now and the rest waits for the next request,
so windows fill exactly (20 groups a second go out as 3+3+3+3+3+3+2). Unless all
of it fits within ``SHRINK_WAIT`` of ``per`` after that part would: then it waits
for all of it, since the rest of a shrunk batch leaves a round trip later (after
the part's answer), and a window's claims leave it at slightly different times
(each request is charged its own uncertainty), so shrinking whenever one unit is
free split most batches over a network and carried the rest's delay into every
later window (``docs/design.md``).

Fairness and cancellation
-------------------------
Waiters are admitted strictly first come, first served: each limit has a FIFO
lock, and only its holder waits for capacity. A 600-unit batch is therefore not
starved by a stream of 1-unit sends, and a 1-unit send waits at most for the
capacity ahead of it. Claims are taken in order, primary limit first and the
call-rate limit last, each waited for under its own lock, so a user send waiting
a minute for recipient quota never blocks group sends on the shared call rate.

A waiter that is cancelled leaves the queue having recorded nothing. A
:class:`Permit` whose request was never sent (the connection could not be made,
or the task was cancelled before sending) is refunded, so cancellation never
leaks capacity.

Interactive and bulk
--------------------
Web handlers and fan-out workers share one quota. Work started by ``fan_out`` is
``bulk``; a direct call is ``interactive`` unless told otherwise
(``priority="bulk"``). Bulk claims fill a window only up to ``limit`` minus
``RateLimits.bulk_headroom`` (1% by default: 60 of the 6000 user recipients a
minute), always, so a single send made while a campaign saturates the quota
finds room at once instead of waiting for the window to slide. A window is a
conservation law (every unit started stays in it for ``per`` seconds), so no
rule can both lend the headroom to bulk and keep it ready: the headroom is what
an interactive request's zero wait costs, and a process that only ever sends
in bulk sets ``bulk_headroom=0`` to take the whole quota. Interactive requests
queue apart from bulk ones, so they never wait behind a campaign's queued
batches. Bulk is never starved: while bulk work waits, interactive requests may
hold at most ``1 - bulk_min_share`` of a window (half, by default). The window
guarantee above holds for both together. Measured against a strict sliding window
(a 36,000-user fan-out and one single send a second, ``docs/design.md``): single
sends wait under 0.2% of the window, in one process or two through Redis (84% when
the headroom was kept only after an interactive request had been seen); the fan-out
keeps 98% of the quota.

Answers and the network
-----------------------
The service counts a request somewhere between its arrival and its answer. A
claim stays in its window until its answer (:meth:`Permit.sending` marks it on its
way), and its answer then charges it only what is uncertain of when it was
counted: with the service's ``timestamp`` and ``duration``, the time from its
start to its answer's timestamp beyond the fastest forward offset seen lately;
without them, the whole round trip (:meth:`Permit.settle`; the rules and what
they assume are in ``_window_rules.py``). A waiter decides again each time it
wakes, so an anchor moved while it slept is respected.

Adaptation
----------
When the service refuses a request for a rate limit anyway (an app key shared
with another service, a server counting differently, network jitter), the
transport refunds the request's permit (a refused request was not counted by
the server either) and calls :meth:`Limiter.penalize` with the limit the request
pressed on: the claim whose window was left with the least room, relative to its
limit, when it was admitted (:attr:`Permit.binding`), whatever the status (429 or
403) says. The rules (widen the window after a timing artifact; otherwise take
95% of what the server accepted, hold, then probe upwards) are one model in
``_window_rules.py``, which the Redis limiter's script mirrors: a server
enforcing less than configured costs a handful of refusals at first and a few
more, ever rarer, afterwards: never a storm.

Memory is bounded by the limit: every log entry holds at least one unit when it
is recorded, and entries older than the window are dropped.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import final

import anyio

from ._call_quotas import CallQuotas, LocalCallQuotas
from ._clock import Clock, SystemClock
from ._exceptions import ValidationError
from ._permit import Permit, ServerTiming
from ._rates import (
    DEFAULT_RATE_LIMITS,
    LIMIT_NAMES,
    Claim,
    LimitName,
    Priority,
    RateLimits,
    check_claims,
    check_units,
    is_bulk,
)
from ._service_clock import ServiceClock
from ._window import Window
from ._window_rules import SHRINK_WAIT

__all__ = [
    "Limiter",
    "SlidingWindowLimiter",
    "bind_once",
]


def bind_once(bound: str | None, app: str) -> str:
    """The app a limiter counts after a client of *app* is given it (``org#app``): the
    first one; a client of another app is refused at once, before it sends anything.

    Raises:
        ValidationError: *bound* is another app.
    """
    if bound is not None and bound != app:
        raise ValidationError(
            "limiter",
            f"counts the quota of app {bound!r}; a client of {app!r} needs a limiter of "
            "its own (each app has its own quotas)",
        )
    return app


class Limiter(abc.ABC):
    """Admits requests so that the configured rates are never exceeded.

    The client calls :meth:`acquire` with a request's claims before each
    attempt, :meth:`Permit.sending` as the request leaves, :meth:`Permit.settle`
    with the answer's :class:`ServerTiming` when it arrives (then :meth:`flush`),
    :meth:`Permit.refund` if the attempt was never sent, and :meth:`penalize`
    when the service refused it for a rate limit anyway. Implementations must
    be safe to share between the tasks of one event loop.
    """

    @property
    @abc.abstractmethod
    def rate_limits(self) -> RateLimits:
        """The configured rates (the batcher sizes batches from them)."""

    @abc.abstractmethod
    async def acquire(
        self,
        claims: Sequence[Claim],
        *,
        min_units: int | None = None,
        priority: Priority = "interactive",
    ) -> Permit:
        """Wait until every claim fits, record them all at once, and return the permit.

        ``priority="bulk"`` work leaves ``RateLimits.bulk_headroom`` of every limit
        free and queues behind interactive requests, which never wait behind it.

        With ``min_units``, the first claim may shrink: it is granted, in its turn, as
        soon as at least ``min_units`` of its units fit, and takes as many as fit then
        (:attr:`Permit.units`). A sender then sends that many recipients now and the
        rest in its next request: a smaller batch now beats a full one later.

        Raises:
            ValidationError: a claim exceeds its limit itself, so it could never start,
                or ``min_units`` is not between 1 and the first claim's units.
        """

    def penalize(self, claims: Sequence[Claim]) -> None:  # noqa: B027 - optional
        """The service refused a request for exceeding these limits: adapt to what it allows.

        *claims* are the refused request's claims on the limits it exceeded.
        """

    async def flush(self) -> None:  # noqa: B027 - optional, the in-memory limiter has nothing
        """Send what this limiter keeps for shared state (late answers, refunds, refusals).

        A limiter shared between processes sends it with its next admission anyway;
        the client flushes after a late answer so that other processes see it at
        once. Never raises for an unreachable store: what could not be sent stays
        queued.
        """

    @property
    def clock(self) -> Clock | None:
        """The clock this limiter waits on, if it is one a client could share (``None``
        for a limiter without one). A client given both ``clock=`` and ``limiter=``
        refuses a limiter on another clock."""
        return None

    async def effective_limit(self, name: LimitName) -> float | None:
        """The limit in force now for *name*: the configured one, or lower after refusals
        (``penalize``); ``None`` when *name* is not limited. The base class knows only the
        configured one."""
        rate = self.rate_limits.rate(name)
        return None if rate is None else float(rate.limit)

    @property
    def call_quotas(self) -> CallQuotas:
        """Where the quotas counted over long periods (``RateLimits.broadcasts``) are
        counted: in this process's memory (the base class), or shared (Redis)."""
        quotas: CallQuotas | None = getattr(self, "_local_call_quotas", None)
        if quotas is None:
            limits = self.rate_limits
            broadcasts = limits.broadcasts
            quotas = LocalCallQuotas(broadcasts, broadcasts.margin, self.clock)
            self._local_call_quotas = quotas
        return quotas

    def bind_app(self, org_name: str, app_name: str) -> None:  # noqa: B027 - optional
        """Called by :class:`AgoraChatClient` with its app, whose quota the limiter counts.

        A limiter counts one app's quota: a shared one names its shared state after the
        app, and either refuses, at once, a client of another app.

        Raises:
            ValidationError: the limiter already counts another app's quota.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most limiters hold nothing
        """Release resources held by the limiter (none for the in-memory one)."""


@final
class SlidingWindowLimiter(Limiter):
    """The in-memory limiter: exact sliding windows, FIFO admission, AIMD, injectable clock.

    Args:
        rate_limits: the rates to enforce; defaults to :data:`DEFAULT_RATE_LIMITS`.
        clock: where time comes from; defaults to the event loop's clock.
    """

    __slots__ = ("_app", "_clock", "_rate_limits", "_service", "_windows")

    def __init__(
        self, rate_limits: RateLimits | None = None, *, clock: Clock | None = None
    ) -> None:
        self._rate_limits = rate_limits or DEFAULT_RATE_LIMITS
        self._clock: Clock = clock or SystemClock()
        self._windows: dict[str, Window] = {}
        #: The floor of forward offsets and the clock check (``_service_clock``).
        self._service = ServiceClock(self._rate_limits.margin)
        self._app: str | None = None

    @property
    def rate_limits(self) -> RateLimits:
        """The rates this limiter enforces."""
        return self._rate_limits

    @property
    def clock(self) -> Clock:
        """The clock this limiter reads and waits on."""
        return self._clock

    def bind_app(self, org_name: str, app_name: str) -> None:
        """Count the quota of the client's app; refuse a client of another app.

        Raises:
            ValidationError: the limiter already counts another app's quota.
        """
        self._app = bind_once(self._app, f"{org_name}#{app_name}")

    async def effective_limit(self, name: LimitName) -> float | None:
        """The limit in force now for *name*: the configured one, or lower after refusals."""
        window = self._windows.get(name)
        if window is not None:
            return window.effective(self._clock.now())
        return await super().effective_limit(name)

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter({self._rate_limits!r})"

    def live_claims(self) -> list[tuple[LimitName, int, bool, float, bool]]:
        """Every claim still counted (in its window, or held there unanswered): its limit,
        units, whether it is interactive, its anchor (this limiter's clock) and whether its
        answer came (or it never left). A :class:`RedisLimiter` coming back from its
        fallback hands them to Redis."""
        now = self._clock.now()
        claims = []
        for window in self._windows.values():
            window.expire(now)
            for entry in (*window.log, *window.held):
                claims.append(
                    (window.name, entry.units, entry.interactive, entry.started, entry.answered)
                )
        return claims

    def _window(self, name: LimitName) -> Window | None:
        window = self._windows.get(name)
        if window is None:
            rate = self._rate_limits.rate(name)
            if rate is None:
                return None
            limits = self._rate_limits
            window = self._windows[name] = Window(
                name,
                rate,
                limits.margin,
                limits.bulk_headroom,
                limits.bulk_min_share,
                service=self._service,
            )
        return window

    async def acquire(
        self,
        claims: Sequence[Claim],
        *,
        min_units: int | None = None,
        priority: Priority = "interactive",
    ) -> Permit:
        """Wait, first come first served, until every claim fits; record them together.

        With ``min_units`` the first claim shrinks to what fits once ``min_units`` do
        (see :meth:`Limiter.acquire`). Interactive requests queue apart from bulk ones
        and ahead of them; bulk work leaves ``bulk_headroom`` of every limit free.

        Raises:
            ValidationError: a claim is not positive or exceeds its limit itself,
                ``min_units`` is out of range, or ``priority`` is unknown.
        """
        bulk = is_bulk(priority)
        shrink_to = min_units if check_claims(claims, min_units) else None
        windows: list[tuple[Window, int]] = []
        ranks: list[int] = []  # each window's place in the one global order of locks
        for index, (name, units) in enumerate(claims):
            window = self._window(name)
            if window is not None:
                check_units(name, units, window.rate)
                windows.append((window, units))
                ranks.append(LIMIT_NAMES.index(name))
            elif index == 0:
                shrink_to = None  # no limit on the first claim: it is granted whole
        # What each window must fit before the request may start: the first claim's
        # minimum if it may shrink, every other claim in full.
        needs = list(windows)
        if shrink_to is not None:
            needs[0] = (needs[0][0], shrink_to)
        whole = claims[0][1] if claims else 0

        def queue(window: Window) -> anyio.Lock:
            return window.bulk_lock if bulk else window.lock

        def wait(now: float, needs: list[tuple[Window, int]]) -> float:
            return max(
                (w.delay(now, need, bulk=bulk, capped=w.bulk_lock.locked()) for w, need in needs),
                default=0.0,
            )

        def first_needs(now: float) -> list[tuple[Window, int]]:
            """*needs*, or all of the first claim if it fits within SHRINK_WAIT of when its
            minimum does (a shrunk batch's rest leaves a round trip later). Decided again
            at each wake-up, as the script decides a reservation again when it is due."""
            if shrink_to is None:
                return needs
            first, units = windows[0]
            if shrink_to >= units or units > first.capacity(now, shrink_to, bulk=bulk):
                return needs
            capped = first.bulk_lock.locked()
            part = first.delay(now, shrink_to, bulk=bulk, capped=capped)
            if (
                first.delay(now, units, bulk=bulk, capped=capped) - part
                > SHRINK_WAIT * first.rate.per
            ):
                return needs
            return [windows[0], *needs[1:]]

        if not any(queue(window).locked() for window, _ in windows):
            # Fast path: nobody of this priority is queued and everything fits now. No
            # lock is free while waiters queue on it (release hands it to the next
            # waiter), so this is FIFO too.
            now = self._clock.now()
            if wait(now, first_needs(now)) <= 0:
                return self._record(now, windows, shrink_to, whole, bulk=bulk)
        async with AsyncExitStack() as stack:
            # Locks are taken in one global order (LIMIT_NAMES: the recipient limits, then
            # the call rates), whatever the order of the claims: two requests claiming
            # the same limits in different orders cannot each hold what the other awaits.
            held: list[int] = []
            for index in sorted(range(len(windows)), key=ranks.__getitem__):
                await stack.enter_async_context(queue(windows[index][0]))
                held.append(index)
                # Wait for this window while holding it; earlier ones only gain capacity.
                while True:
                    now = self._clock.now()
                    every = first_needs(now) if index == 0 else needs
                    delay = wait(now, [every[i] for i in held])
                    if delay <= 0:
                        break
                    await self._clock.sleep(min(w.nap(now, delay) for w, _ in windows))
            return self._record(self._clock.now(), windows, shrink_to, whole, bulk=bulk)

    def _record(
        self,
        now: float,
        windows: list[tuple[Window, int]],
        shrink_to: int | None,
        whole: int,
        *,
        bulk: bool,
    ) -> Permit:
        """Record every claim at *now* (the first shrunk to what fits if *shrink_to*)."""
        granted = [units for _, units in windows]
        if shrink_to is not None:
            granted[0] = min(granted[0], windows[0][0].room(now, shrink_to, bulk=bulk))
        entries = [
            (window, window.record(now, units, interactive=not bulk))
            for (window, _), units in zip(windows, granted, strict=True)
        ]
        # The window left with the least room, relative to its limit, binds this request.
        binding = max(
            entries,
            key=lambda item: item[0].used / max(math.floor(item[0].effective(now)), 1),
            default=None,
        )

        def refund() -> None:
            for window, entry in entries:
                window.refund(entry)

        def settle(timing: ServerTiming | None) -> None:
            done = self._clock.now()
            sent = None if timing is None else timing.sent
            answer = self._service.answer(timing, started=now, done=done, sent=sent)
            for window, entry in entries:
                window.settle(entry, done, answer.anchor, answer.key, floorless=answer.floorless)
            if answer.replace is not None:
                spread = self._service.take_spread()
                for window in self._windows.values():
                    window.replace(answer.replace, spread)

        def sending() -> None:
            now = self._clock.now()
            for window, entry in entries:
                window.sending(entry, now)

        return Permit(
            refund,
            units=granted[0] if shrink_to is not None else whole,
            settle=settle,
            binding=None if binding is None else binding[0].name,
            sending=sending,
        )

    def penalize(self, claims: Sequence[Claim]) -> None:
        """Adapt each named limit to a refusal of the request holding *claims*."""
        now = self._clock.now()
        for name, units in claims:
            window = self._window(name)
            if window is not None:
                window.penalize(now, units)
