"""One limit's sliding window in memory: its log of claims, what is held past it, and
what it learned from refusals (the theory is in :mod:`._limits` and :mod:`._window_rules`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import anyio
import attrs

from ._rates import LimitName, Rate, bulk_limit
from ._service_clock import ServiceClock
from ._window_rules import (
    HELD_POLL,
    JITTER_TOLERANCE,
    UNANSWERED_HOLD,
    Adaptation,
    after_refusal,
    effective_limit,
    kept_for_a_floor,
    moved_anchor,
)

__all__ = ["Entry", "Window"]


@attrs.define(slots=True, eq=False)
class Entry:
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


@attrs.define
class Window:
    name: LimitName
    rate: Rate
    margin: float
    headroom: float = 0.0
    min_share: float = 0.0
    #: The limiter's floor and latest answer (:func:`kept_for_a_floor`).
    service: ServiceClock = attrs.field(kw_only=True)
    #: The FIFO queues: interactive requests never wait behind bulk ones.
    lock: anyio.Lock = attrs.field(factory=lambda: anyio.Lock(fast_acquire=True))
    bulk_lock: anyio.Lock = attrs.field(factory=lambda: anyio.Lock(fast_acquire=True))
    #: Live entries, in the order they leave the window.
    log: deque[Entry] = attrs.field(factory=deque)
    #: Entries that left the window within the last JITTER_TOLERANCE x per: a refusal
    #: right after they left means the server still counted them (jitter), not a lower limit.
    recently_expired: deque[Entry] = attrs.field(factory=deque)
    #: Entries past their window whose answer has not come: the service may count them
    #: yet, so they stay counted (in start order).
    held: deque[Entry] = attrs.field(factory=deque)
    used: int = 0
    used_interactive: int = 0
    #: Claims on their way (:meth:`sending`), until their answer or refund.
    flying: int = 0
    #: Until when the window may hold claims charged the whole round trip for want of a
    #: floor, which the first floor moves earlier: a waiter looks again meanwhile.
    movable_until: float = -math.inf
    adaptation: Adaptation = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.adaptation = Adaptation(base=float(self.rate.limit))

    @property
    def span(self) -> float:
        return self.rate.per + self.margin + self.adaptation.extra_margin

    def effective(self, now: float) -> float:
        return effective_limit(self.adaptation, self.rate.limit, self.rate.per, now)

    def expire(self, now: float) -> None:
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
            self._answer(entry)
            self._release(entry)

    def _release(self, entry: Entry) -> None:
        entry.live = False
        self.used -= entry.units
        if entry.interactive:
            self.used_interactive -= entry.units

    def _limit(self, now: float, *, bulk: bool) -> int:
        """The units the window may hold for this priority: bulk leaves the headroom."""
        limit = math.floor(self.effective(now))
        return bulk_limit(limit, self.headroom) if bulk else limit

    def _kept(self, now: float, limit: int) -> int:
        """The units of *limit* kept back for the first floor (:func:`kept_for_a_floor`)."""
        service = self.service
        # Compared on the script's grid of whole microseconds: in floating point an answer
        # exactly a span ago can read a hair less than the span.
        ago = now - service.answered_at  # inf when no answer came
        return kept_for_a_floor(
            limit,
            self.flying,
            floored=service.floored(now),
            answered_ago=ago if math.isinf(ago) else round(ago * 1e6),
            span=round(self.span * 1e6),
        )

    def capacity(self, now: float, units: int, *, bulk: bool) -> int:
        """The units a claim of *units* may fill the window to: bulk leaves the headroom,
        and a cold window the unit kept for the first floor."""
        limit = self._limit(now, bulk=bulk)
        # A claim above the (lowered) limit still fits an otherwise empty window.
        return max(limit - self._kept(now, limit), units)

    def room(self, now: float, need: int, *, bulk: bool) -> int:
        """Units that fit now (after :meth:`delay` returned 0 for *need* at this time)."""
        return self.capacity(now, need, bulk=bulk) - self.used

    def delay(self, now: float, units: int, *, bulk: bool = False, capped: bool = False) -> float:
        """Seconds until *units* more may start; 0 when they may start now.

        *capped*: bulk work is waiting, so interactive units may fill at most
        ``1 - min_share`` of the window.
        """
        self.expire(now)
        limit = self._limit(now, bulk=bulk)
        kept = self._kept(now, limit)
        wait = self._wait(now, self.used + units - max(limit - kept, units), self.log)
        if wait > 0 and kept and self.used + units <= max(limit, units):
            # Only the unit kept for the first floor stops it (so claims are on their
            # way): an answer may release it at any moment.
            wait = min(wait, HELD_POLL * self.rate.per)
        if capped and not bulk:
            cap = max(math.floor((1 - self.min_share) * math.floor(self.effective(now))), units)
            interactive = (entry for entry in self.log if entry.interactive)
            wait = max(wait, self._wait(now, self.used_interactive + units - cap, interactive))
        return wait

    def nap(self, now: float, wait: float) -> float:
        """How long a waiter for *wait* seconds sleeps before it looks again: less while
        the first floor may move claims of this window earlier at any moment."""
        if now < self.movable_until:
            return min(wait, HELD_POLL * self.rate.per)
        return wait

    def _wait(self, now: float, excess: int, entries: Iterable[Entry]) -> float:
        """Seconds until *excess* units of *entries* (in leaving order) have left; while
        held entries (unanswered) keep them, a short time to look again."""
        if excess <= 0:
            return 0.0
        freed = 0
        leaves = 0.0  # when the last of *entries* leaves (the script's walk, likewise)
        for entry in entries:
            if not entry.units:  # refunded: the script took it out of its log
                continue
            freed += entry.units
            if freed >= excess:
                # At least a microsecond, so that rounding can never leave a waiter spinning.
                return max(entry.started + self.span - now, 1e-6)
            leaves = max(leaves, entry.started + self.span - now)
        if self.held:
            return max(leaves, HELD_POLL * self.rate.per)
        raise AssertionError("unreachable: the claim fits an empty window")  # pragma: no cover

    def record(self, now: float, units: int, *, interactive: bool = True) -> Entry:
        entry = Entry(now, units, interactive=interactive)
        self.log.append(entry)
        self.used += units
        if interactive:
            self.used_interactive += units
        return entry

    def sending(self, entry: Entry, now: float) -> None:
        """*entry*'s request is leaving: it stays counted until its answer, held if its
        window ended before it left (less than a window ago: the script forgets after)."""
        if entry.answered and entry.units:
            entry.answered = False
            self.flying += 1
            if not entry.live and entry.started > now - 2 * self.span:
                if entry in self.recently_expired:  # held now, like any held claim
                    self.recently_expired.remove(entry)
                entry.live = entry.held = True
                self.used += entry.units
                if entry.interactive:
                    self.used_interactive += entry.units
                position = len(self.held)  # the held stay in start order
                while position and self.held[position - 1].started > entry.started:
                    position -= 1
                self.held.insert(position, entry)

    def _answer(self, entry: Entry) -> None:
        if not entry.answered:
            entry.answered = True
            self.flying -= 1

    def refund(self, entry: Entry) -> None:
        self._answer(entry)
        if entry.held:
            entry.held = False
            self.held.remove(entry)
        if entry.live:
            self._release(entry)
        entry.units = 0

    def settle(
        self,
        entry: Entry,
        done: float,
        anchor: float | None,
        key: float | None = None,
        *,
        floorless: bool = False,
    ) -> None:
        """*entry*'s answer came at *done*, and moves its anchor to *anchor* (if any);
        *key*: the service said when it had it (:meth:`replace` may move it again),
        *floorless*: it was charged the whole round trip for want of a floor."""
        self.expire(done)
        if key is not None and entry.live and entry.units:
            entry.key, entry.origin, entry.done = key, entry.started, done
            entry.floorless = floorless
            if floorless:
                self.movable_until = max(self.movable_until, done + self.span)
        self._answer(entry)
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

    def replace(self, floor: float, spread: float = 0.0) -> None:
        """The floor in force dropped to *floor*, or came where there was none: every claim
        charged against a higher one moves to where it belongs now, never earlier, and one
        charged against none to where the first floor places it, less the cold answers'
        *spread* (:func:`moved_anchor`)."""
        moved = False
        self.movable_until = -math.inf  # every claim charged against none is placed now
        for entry in self.log:
            if entry.key is not None:
                anchor = moved_anchor(
                    entry.started,
                    entry.key,
                    floor,
                    entry.origin,
                    entry.done,
                    floorless=entry.floorless,
                    spread=spread,
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
        self.expire(now)
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
