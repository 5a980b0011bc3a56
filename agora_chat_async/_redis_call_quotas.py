"""The long-period call quotas in Redis: every process of an app, and every restart, sees
every broadcast (``_call_quotas.py`` explains the quotas; ``_redis_call_quotas.lua``
mirrors its :func:`~agora_chat_async._call_quotas.decide`).

Two keys a kind of call, beside the limiter's and under the same hash tag (one Cluster
slot per app): ``<prefix>:{<org>#<app>}:calls:<kind>:log`` (a sorted set of the calls
kept, for the sliding rules) and ``...:calls:<kind>:days`` (a hash of calls per day).
Time is the Redis server's ``TIME``, read alike by every process.

A Redis that fails is not replaced by memory here, whatever ``RedisLimiter(fallback=)``
says: a guess could spend an app's third broadcast of the day twice. Transient failures
are retried for ``unavailable_timeout`` seconds, then :class:`LimiterUnavailableError`;
permanent ones raise :class:`LimiterStoreError` at once. Nothing is sent in either case.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, final

from ._call_quotas import CallQuotas, Reservation, day_index, kept_for
from ._clock import Clock
from ._exceptions import LimiterStoreError, LimiterUnavailableError
from ._rates import BroadcastKind, BroadcastLimits, CallRule, DailyLimit, Rate
from ._redis_errors import classify, fix_for

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCallQuotas"]

SCRIPT: Final = resources.files(__package__).joinpath("_redis_call_quotas.lua").read_text("utf-8")


@final
class RedisCallQuotas(CallQuotas):
    """The call quotas of an app, shared through Redis (made by :class:`RedisLimiter`).

    *keys* gives the key prefix of the app (``<prefix>:{<org>#<app>}``) once it is known;
    *now* gives a test clock's time in place of Redis's, or ``None``.
    """

    def __init__(
        self,
        redis: Redis,
        limits: BroadcastLimits,
        margin: float,
        clock: Clock,
        *,
        tag: Callable[[], str],
        prefix: str,
        now: Callable[[], float] | None,
        unavailable_timeout: float,
    ) -> None:
        super().__init__(limits, margin, clock)
        self._script = redis.register_script(SCRIPT)
        self._tag = tag
        self._prefix = prefix
        self._now = now
        self._unavailable_timeout = unavailable_timeout

    async def _call(
        self,
        op: str,
        kind: BroadcastKind,
        *,
        id: str = "",
        day: int = 0,
    ) -> tuple[str, str, str]:
        """One call of the script; its three answers as text."""
        rules = self._limits.rules(kind)
        rates = [rule for rule in rules if isinstance(rule, Rate)]
        daily = next((rule.limit for rule in rules if isinstance(rule, DailyLimit)), 0)
        tag = self._tag()
        keys = [f"{tag}:calls:{kind}:log", f"{tag}:calls:{kind}:days"]
        args: list[Any] = [
            op,
            "",
            self._margin,
            self._limits.day_offset,
            kept_for(rules, self._margin),
            id,
            day,
            daily,
            len(rates),
        ]
        for rate in rates:
            args += [rate.limit, rate.per]
        started = self._clock.now()
        backoff = 0.05
        while True:
            if self._now is not None:
                args[1] = repr(self._now())
            try:
                reply = await self._script(keys=keys, args=args)
            except Exception as exc:
                kind_of_failure = classify(exc)
                if kind_of_failure is None:
                    raise
                if kind_of_failure == "permanent":
                    raise LimiterStoreError(
                        f"{fix_for(exc, self._prefix)}; nothing was sent"
                    ) from None
                waited = self._clock.now() - started
                if waited >= self._unavailable_timeout - 1e-6:
                    raise LimiterUnavailableError(
                        f"Redis has been unavailable for {waited:.1f} s "
                        f"({type(exc).__name__}: {exc}); nothing was sent (the broadcast "
                        "quotas are never guessed in memory). Check the Redis server"
                    ) from None
                await self._clock.sleep(min(backoff, self._unavailable_timeout - waited))
                backoff = min(backoff * 2, 1.0)
                continue
            first, second, third = (_text(part) for part in reply)
            return first, second, third

    async def try_reserve(
        self, kind: BroadcastKind, rules: Sequence[CallRule]
    ) -> tuple[Reservation | None, float, float]:
        id = uuid.uuid4().hex
        granted, now, at = await self._call("reserve", kind, id=id)
        reservation = Reservation(kind, id, float(now)) if granted == "1" else None
        return reservation, float(now), float(at)

    async def give_back(self, reservation: Reservation) -> None:
        day = day_index(reservation.at, self._limits.day_offset)
        await self._call("give_back", reservation.kind, id=reservation.id, day=day)

    async def exhaust(self, kind: BroadcastKind) -> None:
        await self._call("exhaust", kind)

    async def spent(self, kind: BroadcastKind) -> tuple[int, int]:
        kept, today, _ = await self._call("spent", kind)
        return int(kept), int(today)


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
