"""What a limiter learns of the service's clock from its answers (one per limiter).

Both limiters keep the floor of forward offsets and the clock check of
:mod:`._window_rules`, and turn each answer's :class:`ServerTiming` into what it means for
the answered claims (:func:`._window_rules.answered`), in their own unit of time: seconds
in memory, microseconds of the Redis server's clock in Redis.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar, final

import attrs

from ._permit import ServerTiming
from ._window_rules import (
    FLOOR_BUCKET,
    RESOLUTION,
    Answered,
    ClockCheck,
    DelayFloor,
    answered,
    floor_value,
    moved_anchor,
)

__all__ = ["ChargedClaims", "ServiceClock"]

IdsT = TypeVar("IdsT")


@final
class ServiceClock:
    """The floor of forward offsets and the clock check of one limiter, in its unit
    (*unit* of them a second), with the limiter's *margin* in seconds."""

    __slots__ = (
        "_bucket",
        "_cold",
        "_margin",
        "_resolution",
        "_unit",
        "answered_at",
        "check",
        "floor",
    )

    def __init__(self, margin: float, *, unit: float = 1.0) -> None:
        self.floor = DelayFloor()
        self.check = ClockCheck()
        #: When the latest answer came (any answer: it left a connection that answered).
        self.answered_at = -math.inf
        #: The lowest and highest forward offsets of the answers charged for want of a
        #: floor since the last floor (``None``: none).
        self._cold: tuple[float, float] | None = None
        self._unit = unit
        self._margin = margin * unit
        self._bucket = FLOOR_BUCKET * unit
        self._resolution = RESOLUTION * unit

    def floored(self, at: float) -> bool:
        """Whether a floor is in force at *at* (:func:`._window_rules.floor_value`)."""
        return floor_value(self.floor, at, self._bucket) != math.inf

    def answer(
        self,
        timing: ServerTiming | None,
        *,
        started: float,
        done: float,
        sent: float | None = None,
    ) -> Answered:
        """The answer at *done* of a request started at *started* whose bytes began to
        leave at *sent* (if known), on the limiter's clock and in its unit: what it
        leaves (:class:`._window_rules.Answered`), the floor and check updated."""
        self.answered_at = max(self.answered_at, done)
        unit = self._unit
        offset = lag = duration = sent_offset = None
        if timing is not None:
            arrival = timing.arrival * unit
            offset = arrival - started
            lag = timing.timestamp * unit - done
            duration = None if timing.duration is None else timing.duration * unit
            sent_offset = None if sent is None else arrival - sent
        answer = answered(
            self.floor,
            self.check,
            started=started,
            done=done,
            at=done,
            margin=self._margin,
            bucket=self._bucket,
            resolution=self._resolution,
            offset=offset,
            lag=lag or 0.0,
            duration=duration,
            warm=timing is not None and timing.tells_floor,
            sent_offset=sent_offset,
        )
        self.floor, self.check = answer.floor, answer.check
        if answer.floorless and answer.sample is not None:
            low, high = self._cold or (answer.sample, answer.sample)
            self._cold = (min(low, answer.sample), max(high, answer.sample))
        return answer

    def take_spread(self) -> float:
        """How far the forward offsets of the answers charged without a floor spread (0
        with fewer than two), for the first floor's moves (:func:`moved_anchor`); the
        next cold window starts a new spread."""
        cold, self._cold = self._cold, None
        return 0.0 if cold is None else cold[1] - cold[0]


@attrs.define(slots=True)
class _Charged(Generic[IdsT]):
    ids: IdsT
    key: float
    started: float
    done: float
    anchor: float
    floorless: bool


@final
class ChargedClaims(Generic[IdsT]):
    """A process's answered claims whose answers said when the service had them, kept
    while they may be in a window (at most *longest* after their answer), so that a floor
    that drops, or the first one, moves them (:func:`._window_rules.moved_anchor`; the
    Redis limiter reports the moves)."""

    __slots__ = ("_claims", "_longest")

    def __init__(self, longest: float) -> None:
        self._claims: deque[_Charged[IdsT]] = deque()
        self._longest = longest

    def add(self, ids: IdsT, answer: Answered, *, started: float, done: float) -> None:
        """The claims *ids* answered at *done* with *answer* (kept if it has a key)."""
        self._forget(done)
        if answer.key is not None:
            anchor = started if answer.anchor is None else answer.anchor
            self._claims.append(_Charged(ids, answer.key, started, done, anchor, answer.floorless))

    def moved(
        self, floor: float, now: float, *, spread: float = 0.0
    ) -> list[tuple[IdsT, float, bool]]:
        """The floor in force dropped to *floor* at *now* (or came where there was none,
        the cold answers' offsets *spread* so far): the claims that move, where, and
        whether earlier than they were."""
        self._forget(now)
        moves = []
        for claim in self._claims:
            anchor = moved_anchor(
                claim.anchor, claim.key, floor, claim.started, claim.done,
                floorless=claim.floorless, spread=spread,
            )  # fmt: skip
            claim.floorless = False
            if anchor != claim.anchor:
                moves.append((claim.ids, anchor, anchor < claim.anchor))
                claim.anchor = anchor
        return moves

    def _forget(self, now: float) -> None:
        """Drop the claims answered longer than any window before *now*: they have left."""
        claims = self._claims
        while claims and claims[0].done + self._longest < now:
            claims.popleft()

    def __len__(self) -> int:
        return len(self._claims)
