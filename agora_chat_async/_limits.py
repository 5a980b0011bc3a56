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
so windows fill exactly (20 groups a second go out as 3+3+3+3+3+3+2).

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
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from typing import final

import anyio
import attrs

from ._clock import Clock, SystemClock
from ._permit import Permit, ServerTiming
from ._rates import (
    DEFAULT_RATE_LIMITS,
    Claim,
    LimitName,
    Priority,
    Rate,
    RateLimits,
    check_claims,
    check_units,
    is_bulk,
)
from ._service_clock import ServiceClock
from ._window_rules import (
    HELD_POLL,
    JITTER_TOLERANCE,
    UNANSWERED_HOLD,
    Adaptation,
    after_refusal,
    effective_limit,
    moved_anchor,
)

__all__ = [
    "Limiter",
    "SlidingWindowLimiter",
]


@attrs.define(slots=True, eq=False)
class _Entry:
    #: When the claim started, or where its answer moved it (:func:`settled_anchor`).
    started: float
    units: int
    #: Counted in the window (in its log, or held there unanswered).
    live: bool = True
    interactive: bool = True
    #: Not on its way, or its answer came (or it was refunded); a request on its way
    #: (:meth:`Permit.sending`) never leaves the window before its answer.
    answered: bool = True
    #: Unanswered past its window: held (counted) until its answer or UNANSWERED_HOLD.
    held: bool = False
    #: Its answer told when the service had it: its key (:func:`moved_anchor`), its start
    #: and its answer, so that a floor lowered later (or the first one) moves it;
    #: ``floorless``: it was charged the whole round trip for want of a floor.
    key: float | None = None
    origin: float = 0.0
    done: float = 0.0
    floorless: bool = False


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

    def bind_app(self, org_name: str, app_name: str) -> None:  # noqa: B027 - optional
        """Called by :class:`AgoraChatClient` with its app, whose quota the limiter counts.

        A limiter shared between processes names its shared state after the app.

        Raises:
            ValidationError: the limiter already counts another app's quota.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most limiters hold nothing
        """Release resources held by the limiter (none for the in-memory one)."""


@attrs.define
class _Window:
    name: LimitName
    rate: Rate
    margin: float
    headroom: float = 0.0
    min_share: float = 0.0
    #: The FIFO queues: interactive requests never wait behind bulk ones.
    lock: anyio.Lock = attrs.field(factory=lambda: anyio.Lock(fast_acquire=True))
    bulk_lock: anyio.Lock = attrs.field(factory=lambda: anyio.Lock(fast_acquire=True))
    #: Live entries, in the order they leave the window.
    log: deque[_Entry] = attrs.field(factory=deque)
    #: Entries that left the window within the last JITTER_TOLERANCE x per: a refusal
    #: right after they left means the server still counted them (jitter), not a lower limit.
    recently_expired: deque[_Entry] = attrs.field(factory=deque)
    #: Entries past their window whose answer has not come: the service may count them
    #: yet, so they stay counted (in start order).
    held: deque[_Entry] = attrs.field(factory=deque)
    used: int = 0
    used_interactive: int = 0
    adaptation: Adaptation = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.adaptation = Adaptation(base=float(self.rate.limit))

    @property
    def span(self) -> float:
        return self.rate.per + self.margin + self.adaptation.extra_margin

    def effective(self, now: float) -> float:
        return effective_limit(self.adaptation, self.rate.limit, self.rate.per, now)

    def _expire(self, now: float) -> None:
        log, expired, held = self.log, self.recently_expired, self.held
        while log and log[0].started <= now - self.span:
            entry = log.popleft()
            if not entry.answered:  # still in flight: the service may count it yet
                entry.held = True
                held.append(entry)
                continue
            self._release(entry)
            expired.append(entry)
        horizon = now - self.span - JITTER_TOLERANCE * self.rate.per
        while expired and expired[0].started <= horizon:
            expired.popleft()
        while held and held[0].started <= now - self.span - UNANSWERED_HOLD:
            entry = held.popleft()  # a request that never ends: let it go
            entry.held = False
            self._release(entry)

    def _release(self, entry: _Entry) -> None:
        entry.live = False
        self.used -= entry.units
        if entry.interactive:
            self.used_interactive -= entry.units

    def capacity(self, now: float, units: int, *, bulk: bool) -> int:
        """The units a claim of *units* may fill the window to: bulk leaves the headroom."""
        limit = math.floor(self.effective(now))
        if bulk:
            limit -= math.floor(self.headroom * limit)
        # A claim above the (lowered) limit still fits an otherwise empty window.
        return max(limit, units)

    def room(self, now: float, need: int, *, bulk: bool) -> int:
        """Units that fit now (after :meth:`delay` returned 0 for *need* at this time)."""
        return self.capacity(now, need, bulk=bulk) - self.used

    def delay(self, now: float, units: int, *, bulk: bool = False, capped: bool = False) -> float:
        """Seconds until *units* more may start; 0 when they may start now.

        *capped*: bulk work is waiting, so interactive units may fill at most
        ``1 - min_share`` of the window.
        """
        self._expire(now)
        wait = self._wait(now, self.used + units - self.capacity(now, units, bulk=bulk), self.log)
        if capped and not bulk:
            cap = max(math.floor((1 - self.min_share) * math.floor(self.effective(now))), units)
            interactive = (entry for entry in self.log if entry.interactive)
            wait = max(wait, self._wait(now, self.used_interactive + units - cap, interactive))
        return wait

    def _wait(self, now: float, excess: int, entries: Iterable[_Entry]) -> float:
        """Seconds until *excess* units of *entries* (in leaving order) have left; while
        held entries (unanswered) keep them, a short time to look again."""
        if excess <= 0:
            return 0.0
        freed = 0
        for entry in entries:
            freed += entry.units
            if freed >= excess:
                # At least a microsecond, so that rounding can never leave a waiter spinning.
                return max(entry.started + self.span - now, 1e-6)
        if self.held:
            return HELD_POLL * self.rate.per
        raise AssertionError("unreachable: the claim fits an empty window")  # pragma: no cover

    def record(self, now: float, units: int, *, interactive: bool = True) -> _Entry:
        entry = _Entry(now, units, interactive=interactive)
        self.log.append(entry)
        self.used += units
        if interactive:
            self.used_interactive += units
        return entry

    def refund(self, entry: _Entry) -> None:
        entry.answered = True
        if entry.held:
            entry.held = False
            self.held.remove(entry)
        if entry.live:
            self._release(entry)
        entry.units = 0

    def settle(
        self,
        entry: _Entry,
        done: float,
        anchor: float | None,
        key: float | None = None,
        *,
        floorless: bool = False,
    ) -> None:
        """*entry*'s answer came at *done*, and moves its anchor to *anchor* (if any);
        *key*: the service said when it had it (:meth:`replace` may move it again),
        *floorless*: it was charged the whole round trip for want of a floor."""
        self._expire(done)
        if key is not None and entry.live and entry.units:
            entry.key, entry.origin, entry.done = key, entry.started, done
            entry.floorless = floorless
        entry.answered = True
        if entry.held:  # answered after its window, held until now: back in the log, from
            entry.held = False  # where the next decision lets it leave
            self.held.remove(entry)
            if anchor is not None and anchor > entry.started:
                entry.started = anchor
        else:
            if not entry.live or entry.units == 0 or anchor is None or anchor <= entry.started:
                return
            self.log.remove(entry)
            entry.started = anchor
        # Keep the log in leaving order: late answers arrive roughly in order.
        position = len(self.log)
        while position and self.log[position - 1].started > entry.started:
            position -= 1
        self.log.insert(position, entry)

    def replace(self, floor: float) -> None:
        """The floor in force dropped to *floor*, or came where there was none: every claim
        charged against a higher one moves to where it belongs now, never earlier, and one
        charged against none to where the first floor places it (:func:`moved_anchor`)."""
        moved = False
        for entry in self.log:
            if entry.key is not None:
                anchor = moved_anchor(
                    entry.started,
                    entry.key,
                    floor,
                    entry.origin,
                    entry.done,
                    floorless=entry.floorless,
                )
                entry.floorless = False
                if anchor != entry.started:
                    entry.started, moved = anchor, True
        if moved:
            self.log = deque(sorted(self.log, key=lambda entry: entry.started))

    def penalize(self, now: float, units: int) -> None:
        """The server refused a request of *units* units of this limit: adapt.

        The refused request's permit has been refunded, so the claims anchored in the
        window are what the server accepted (plus requests still in flight).
        """
        self._expire(now)
        # By start (anchor) time, as the Redis script counts: a window widened since
        # counts again what left the narrower one.
        accepted = recent = 0
        for entry in (*self.recently_expired, *self.log):
            if now - self.span < entry.started <= now:
                accepted += entry.units
            elif now - self.span - JITTER_TOLERANCE * self.rate.per < entry.started:
                recent += entry.units
        self.adaptation = after_refusal(
            self.adaptation,
            self.rate.limit,
            self.rate.per,
            at=now,
            units=units,
            accepted=accepted,
            recent=recent,
        )


@final
class SlidingWindowLimiter(Limiter):
    """The in-memory limiter: exact sliding windows, FIFO admission, AIMD, injectable clock.

    Args:
        rate_limits: the rates to enforce; defaults to :data:`DEFAULT_RATE_LIMITS`.
        clock: where time comes from; defaults to the event loop's clock.
    """

    __slots__ = ("_clock", "_rate_limits", "_service", "_windows")

    def __init__(
        self, rate_limits: RateLimits | None = None, *, clock: Clock | None = None
    ) -> None:
        self._rate_limits = rate_limits or DEFAULT_RATE_LIMITS
        self._clock: Clock = clock or SystemClock()
        self._windows: dict[str, _Window] = {}
        #: The floor of forward offsets and the clock check (``_service_clock``).
        self._service = ServiceClock(self._rate_limits.margin)

    @property
    def rate_limits(self) -> RateLimits:
        """The rates this limiter enforces."""
        return self._rate_limits

    def effective_limit(self, name: LimitName) -> float | None:
        """The limit in force now for *name*: the configured one, or lower after refusals."""
        window = self._windows.get(name)
        if window is not None:
            return window.effective(self._clock.now())
        rate = self._rate_limits.rate(name)
        return None if rate is None else float(rate.limit)

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter({self._rate_limits!r})"

    def _window(self, name: LimitName) -> _Window | None:
        window = self._windows.get(name)
        if window is None:
            rate = self._rate_limits.rate(name)
            if rate is None:
                return None
            limits = self._rate_limits
            window = self._windows[name] = _Window(
                name, rate, limits.margin, limits.bulk_headroom, limits.bulk_min_share
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
        windows: list[tuple[_Window, int]] = []
        for index, (name, units) in enumerate(claims):
            window = self._window(name)
            if window is not None:
                check_units(name, units, window.rate)
                windows.append((window, units))
            elif index == 0:
                shrink_to = None  # no limit on the first claim: it is granted whole
        # What each window must fit before the request may start: the first claim's
        # minimum if it may shrink, every other claim in full.
        needs = list(windows)
        if shrink_to is not None:
            needs[0] = (needs[0][0], shrink_to)
        whole = claims[0][1] if claims else 0

        def queue(window: _Window) -> anyio.Lock:
            return window.bulk_lock if bulk else window.lock

        def wait(now: float, needs: list[tuple[_Window, int]]) -> float:
            return max(
                (w.delay(now, need, bulk=bulk, capped=w.bulk_lock.locked()) for w, need in needs),
                default=0.0,
            )

        if not any(queue(window).locked() for window, _ in windows):
            # Fast path: nobody of this priority is queued and everything fits now. No
            # lock is free while waiters queue on it (release hands it to the next
            # waiter), so this is FIFO too.
            now = self._clock.now()
            if wait(now, needs) <= 0:
                return self._record(now, windows, shrink_to, whole, bulk=bulk)
        async with AsyncExitStack() as stack:
            for index, (window, _) in enumerate(windows):
                await stack.enter_async_context(queue(window))
                # Wait for this window while holding it; earlier ones only gain capacity.
                while (delay := wait(self._clock.now(), needs[: index + 1])) > 0:
                    await self._clock.sleep(delay)
            return self._record(self._clock.now(), windows, shrink_to, whole, bulk=bulk)

    def _record(
        self,
        now: float,
        windows: list[tuple[_Window, int]],
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
                for window in self._windows.values():
                    window.replace(answer.replace)

        def sending() -> None:
            for _, entry in entries:
                if entry.live and entry.units:
                    entry.answered = False

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
