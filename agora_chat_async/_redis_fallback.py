"""The in-memory limiter a :class:`RedisLimiter` sends through while Redis is unavailable,
and what it hands back to Redis when Redis returns.

While Redis is unavailable, ``RedisLimiter(fallback=f)`` admits through a
:class:`SlidingWindowLimiter` at ``f`` times every rate and tries Redis again every
``unavailable_timeout`` seconds. When a call reaches Redis again, it carries the claims the
fallback admitted that are still in their windows (:meth:`Fallback.handed_back`), which the
script records at their anchors: the other processes count them, and this one does not
send a window's worth again at once. A claim whose request is still on its way is handed
back as if it started then (its answer, which only the fallback hears, could move it later).
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Final

from ._clock import Clock
from ._limits import SlidingWindowLimiter
from ._rates import LimitName, RateLimits, scaled_limits

__all__ = ["Fallback"]

logger: Final = logging.getLogger("agora_chat_async.limiter")


class Fallback:
    """Whether a :class:`RedisLimiter` is falling back, and its in-memory limiter."""

    def __init__(self, fraction: float | None, timeout: float, clock: Clock) -> None:
        self.fraction = fraction
        self._timeout = timeout
        self._clock = clock
        self.limiter: SlidingWindowLimiter | None = None
        self.active = False
        self._until = -math.inf

    @property
    def in_force(self) -> bool:
        """Falling back, and not yet time to try Redis again."""
        return self.active and self._clock.now() < self._until

    def start(self, rate_limits: RateLimits, exc: BaseException) -> None:
        """Redis is unavailable (*exc*): admit in memory, try Redis again after a while."""
        assert self.fraction is not None  # noqa: S101 - checked by the caller
        if self.limiter is None:
            limits = scaled_limits(rate_limits, self.fraction)
            self.limiter = SlidingWindowLimiter(limits, clock=self._clock)
        self.active = True
        self._until = self._clock.now() + self._timeout
        logger.warning(
            "Redis unavailable (%s); sending at %.0f%% of the quota with an in-memory "
            "limiter, trying Redis again in %.0f s",
            type(exc).__name__,
            self.fraction * 100,
            self._timeout,
        )

    def handed_back(self, index: dict[LimitName, int]) -> list[int | str]:
        """The script's arguments for the claims admitted meanwhile that are still in their
        windows: their number, then (limit index, id, units, microseconds since the anchor)
        for each. ``[0]`` when nothing is to be handed back."""
        if self.limiter is None:
            return [0]
        now = self._clock.now()
        args: list[int | str] = []
        for name, units, interactive, anchor, answered in self.limiter.live_claims():
            position = index.get(name)
            if position is None:
                continue
            claim_id = ("i" if interactive else "b") + secrets.token_hex(8)
            ago = max(0, round((now - (anchor if answered else now)) * 1_000_000))
            args += [position, claim_id, units, ago]
        return [len(args) // 4, *args]

    def returned(self) -> None:
        """A call reached Redis, carrying what :meth:`handed_back` gave: send through it."""
        if self.active:
            logger.warning("Redis is reachable again; the shared limiter is back in use")
        self.active = False
        self.limiter = None
