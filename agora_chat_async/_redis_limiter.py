"""One quota, many processes: the limiter whose state lives in Redis.

An app key's quota is shared by every process that sends with it. Each
:class:`SlidingWindowLimiter` believes it owns the whole quota, so four workers send four
times too fast. :class:`RedisLimiter` keeps the windows in Redis, and every admission
decision is one atomic server-side script (``_redis_limiter.lua``) in one round trip.

How it decides
--------------
Every limit has a log in Redis (a sorted set of claims scored by their anchor, their start
at first), the units of each claim, and a small state hash. The script reads the time from
the Redis server (``TIME``), so clock skew between hosts does not matter, forgets the claims
that left the window, finds the earliest time at which every claim of the request fits
(never before an earlier reservation of the limit that decides it: first come, first served
across all processes), and records them all at that time. It answers "start now", or "not
before t" and the caller sleeps until then, no polling. A shrinkable claim (``min_units``)
takes as many units as fit at that time. A reservation decides again when it is due (a
second round trip), in its place, as a waiter in memory: it starts then if the window that
ends at its start has room beside the claims that started and the reservations before it, or
waits there for the claims whose answers moved them later to leave (later reservations
decide again when they are due, and count it then). A new claim is placed where every
recorded claim, reservations in the future included, leaves it room; an interactive one
starts at once if the window that ends now has room. Only the limit that decided a request's
time holds later claims back (the call-rate claim of a user send waiting for recipient quota
does not make group sends wait).

Answers move anchors as in memory (``_window_rules.settled_anchor``): a claim is charged
what is uncertain of when the service counted it. The floor of forward offsets is shared (a
hash in Redis, returned with every decision), so a process far from the service charges its
claims against the earliest that any process can be counted. A moved anchor, and a forward
offset below the floor, are carried by the next admission and flushed by the client right
after the answer.

So the guarantee of the in-memory limiter holds across processes: in no interval of
``per`` seconds does the service count more than ``limit`` units of all processes together,
under the assumptions stated in ``_window_rules`` (``margin`` now also absorbs one Redis
round trip). Requests waiting for one limit are granted in the order the script ran,
whichever process asked, so no process starves.

Late answers, refunds and penalties (a request never sent; a 429 from the service) are
queued in the process and carried by its next admission, in the same round trip. A
refund that never gets carried (the process stops) only leaves capacity unused until the
window passes. Adaptation is the in-memory limiter's (one model, ``_window_rules.py``,
whose constants are prepended to the script when it is loaded), stored in Redis so that
every worker adapts together: a penalty carries how long ago the refusal was, and the
script judges it as of then.

Keys and memory
---------------
Every key of one app is named ``<prefix>:{<org>#<app>}:...``
(``agora-chat:{acme#chat}:users:log``): it begins with the prefix, as ACL key patterns
(``~agora-chat:*``) and ``SCAN MATCH`` expect, and the hash tag is the app key alone, so one
decision touches one Redis Cluster slot. A log holds at most ``limit`` claims per window
(and the claims in flight); every key expires by itself a few windows after its last use.
What a call costs does not grow with the window (how: the script's opening comment); what
an ACL user needs and what an admission costs the Redis: ``docs/workers.md``.

When Redis restarts without its data (or is flushed, or fails over to a replica that
lacks it), the sends of the last window are unknown: the script notices (its marker key is
missing) and, with ``cold_start_wait=True`` (the default), lets nothing start for one
window of each limit; so too at an app key's first use with a Redis, or after a week unused.

When Redis is unreachable, admissions retry for ``unavailable_timeout`` seconds, then raise
:class:`LimiterUnavailableError` or fall back (``fallback``: the class's docstring); nothing
is ever sent unlimited. The broadcasts' quotas are shared through the same Redis
(``_redis_call_quotas.py``) and never fall back.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from ._call_quotas import CallQuotas
from ._clock import Clock, SystemClock
from ._exceptions import LimiterStoreError, LimiterUnavailableError, ValidationError
from ._limits import Limiter, bind_once
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
from ._redis_call_quotas import RedisCallQuotas
from ._redis_errors import as_limiter_error, classify, fix_for
from ._redis_fallback import Fallback
from ._redis_script import (
    BUCKET_US,
    MICROS,
    SCRIPT,
    SEEN_TTL_MS,
    Carried,
    Decision,
    ScriptClaim,
    read_floor,
)
from ._service_clock import ChargedClaims, ServiceClock
from ._window_rules import MAX_EXTRA_MARGIN, Adaptation, effective_limit, floor_value, observe_floor

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisLimiter"]

logger: Final = logging.getLogger("agora_chat_async.limiter")


@final
class RedisLimiter(Limiter):
    """A :class:`Limiter` shared by every process that uses the same Redis (``redis.asyncio``).

    Needs the ``redis`` extra (``pip install 'agora-chat-async[redis]'``) and asyncio::

        import redis.asyncio as redis

        limiter = RedisLimiter(redis.from_url("redis://localhost:6379/0"))
        async with AgoraChatClient(url, org, app, auth=auth, limiter=limiter) as client:
            ...

    Every process of one app key must use the same ``rate_limits``. The client names the
    app (``org#app``) in the keys; pass ``app_key`` to share one state under another name.

    Args:
        redis: a ``redis.asyncio.Redis`` (or ``RedisCluster``) client; you close it.
        rate_limits: the quotas to stay within; the documented ones by default.
        app_key: the name of the shared quota in the keys (default: the client's ``org#app``).
        prefix: the first part of every key.
        unavailable_timeout: seconds to retry an unreachable Redis before raising (or
            falling back).
        fallback: if set, the fraction of every rate an in-memory limiter allows while
            Redis is unreachable (choose at most 1 / processes); by default, none.
        cold_start_wait: when Redis has no record of this app key (first use, restart
            without persistence), let nothing start for one window.
        clock: only for tests (a :class:`~agora_chat_async.testing.MockClock` or
            ``ScaledClock``): its time replaces the Redis server's, and the limiter waits on
            it. Left out, time is the Redis server's ``TIME``, which every process reads
            alike; ``SystemClock()`` is refused (each host's clock would disagree).

    Raises:
        ValidationError: an argument is out of range, or ``clock`` is a ``SystemClock``.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        rate_limits: RateLimits | None = None,
        app_key: str | None = None,
        prefix: str = "agora-chat",
        unavailable_timeout: float = 30.0,
        fallback: float | None = None,
        cold_start_wait: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if not unavailable_timeout > 0:
            raise ValidationError(
                "unavailable_timeout", f"must be > 0 seconds, got {unavailable_timeout!r}"
            )
        if fallback is not None and not 0 < fallback <= 1:
            raise ValidationError("fallback", f"must be in (0, 1], got {fallback!r}")
        if isinstance(clock, SystemClock):
            raise ValidationError(
                "clock",
                "replaces the Redis server's clock, for tests only (MockClock, ScaledClock); "
                "leave it out: the processes sharing a quota must all read Redis's TIME",
            )
        self._redis = redis
        self._rate_limits = rate_limits or DEFAULT_RATE_LIMITS
        self._prefix = prefix
        self._app_key = app_key
        self._bound: str | None = None  # the app of the clients given it (``bind_once``)
        self._unavailable_timeout = unavailable_timeout
        self._cold_start_wait = cold_start_wait
        #: With a test clock, its time replaces the Redis server's in the script.
        self._clock_override = clock is not None
        self._clock: Clock = clock or SystemClock()
        self._fallback = Fallback(fallback, unavailable_timeout, self._clock)
        self._script = redis.register_script(SCRIPT)
        rates = ((name, self._rate_limits.rate(name)) for name in LIMIT_NAMES)
        self._limits = [(name, rate) for name, rate in rates if rate is not None]
        self._index = {name: index + 1 for index, (name, _) in enumerate(self._limits)}
        # What a cold start waits, for its warning: "users 60 s; groups, rooms, ... 1 s".
        pers = sorted({rate.per for _, rate in self._limits}, reverse=True)
        names = {per: ", ".join(n for n, r in self._limits if r.per == per) for per in pers}
        self._windows = "; ".join(f"{names[per]} {per:g} s" for per in pers)
        # The script's per-limit arguments never change: limit, per and span in microseconds.
        self._limit_args: list[Any] = []
        for _, rate in self._limits:
            span = rate.per + self._rate_limits.margin
            self._limit_args += [rate.limit, round(rate.per * MICROS), round(span * MICROS)]
        self._key_list: list[str] | None = None  # built once the app key is known
        #: Late answers, refunds, refusals, ... for the next call (``Carried``).
        self._carried = Carried()
        #: The shared floor of forward offsets as of the last reply, plus what was
        #: observed since, and the clock check, in Redis microseconds (``_service_clock``).
        self._service = ServiceClock(self._rate_limits.margin, unit=MICROS)
        #: This process's claims charged against a floor, which a lower floor moves.
        longest = max((rate.per * (1 + MAX_EXTRA_MARGIN) for _, rate in self._limits), default=0)
        self._charged = ChargedClaims[list[tuple[int, str]]](
            (longest + self._rate_limits.margin) * MICROS
        )
        #: When this process's latest answer came (local clock): a window without a floor
        #: keeps a unit back until one comes (``_window_rules.kept_for_a_floor``).
        self._answered_at: float | None = None
        #: Round trips to Redis so far (admissions, retries too), read by the benchmarks.
        self._round_trips = 0
        self._owns_redis = False
        self._calls: RedisCallQuotas | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisLimiter:
        """A limiter on a Redis client of its own, made from *url* and closed by :meth:`aclose`.

        ``RedisLimiter.from_url("redis://redis.internal:6379/0", rate_limits=limits)``; the
        *options* are those of the constructor.

        Raises:
            ValidationError: an option is out of range, or *url* is not a Redis URL.
            ImportError: redis-py is not installed (``pip install 'agora-chat-async[redis]'``).
        """
        import redis.asyncio

        try:
            client = redis.asyncio.from_url(url)
        except ValueError as exc:
            raise ValidationError("redis_url", f"is not a Redis URL ({exc})") from None
        limiter = cls(client, **options)
        limiter._owns_redis = True
        return limiter

    def __repr__(self) -> str:
        return f"RedisLimiter({self._rate_limits!r}, app_key={self._app_key!r})"

    @property
    def rate_limits(self) -> RateLimits:
        """The configured rates."""
        return self._rate_limits

    def bind_app(self, org_name: str, app_name: str) -> None:
        """Count the quota of the client's app (named ``app_key`` in the keys if given).

        Raises:
            ValidationError: the limiter is already bound to another app.
        """
        self._bound = bind_once(self._bound, f"{org_name}#{app_name}")
        if self._app_key is None:
            self._app_key = self._bound
            self._key_list = None

    @property
    def clock(self) -> Clock:
        """The clock it waits on (its time is Redis's ``TIME`` unless a test gave one)."""
        return self._clock

    @property
    def call_quotas(self) -> CallQuotas:
        """The broadcasts' quotas, shared through this Redis (``_redis_call_quotas``)."""
        if self._calls is None:
            self._calls = RedisCallQuotas(
                self._redis,
                self._rate_limits.broadcasts,
                self._rate_limits.broadcasts.margin,
                self._clock,
                tag=lambda: self._keys()[0].removesuffix(":seen"),
                prefix=self._prefix,
                now=self._clock.now if self._clock_override else None,
                unavailable_timeout=self._unavailable_timeout,
            )
        return self._calls

    def _keys(self) -> list[str]:
        if self._key_list is None:
            if self._app_key is None:
                raise ValidationError(
                    "app_key", "give RedisLimiter(app_key=...) or pass it to an AgoraChatClient"
                )
            # The hash tag is the app key alone: one Cluster slot per app, and every key
            # begins with the prefix, as ACL key patterns and SCAN MATCH expect.
            tag = f"{self._prefix}:{{{self._app_key}}}"
            keys = [f"{tag}:seen"]
            parts = ("state", "log", "recent", "units", "flight", "held")
            for name, _ in self._limits:
                keys += [f"{tag}:{name}:{part}" for part in parts]
            keys.append(f"{tag}:floor")
            self._key_list = keys
        return self._key_list

    async def acquire(
        self,
        claims: Sequence[Claim],
        *,
        min_units: int | None = None,
        priority: Priority = "interactive",
    ) -> Permit:
        """Wait until every claim fits across all processes; record them all.

        With ``min_units`` the first claim shrinks to what fits once ``min_units`` do
        (see :meth:`Limiter.acquire`).

        Raises:
            ValidationError: a claim is not positive or exceeds its limit itself,
                ``min_units`` is out of range, or ``priority`` is unknown.
            LimiterUnavailableError: Redis stayed unreachable for ``unavailable_timeout``
                seconds and there is no fallback.
        """
        bulk = is_bulk(priority)
        shrinks = check_claims(claims, min_units)
        whole = claims[0][1] if claims else 0
        pending: list[ScriptClaim] = []
        for position, (name, units) in enumerate(claims):
            index = self._index.get(name)
            if index is None:
                continue
            check_units(name, units, self._limits[index - 1][1])
            need = min_units if shrinks and position == 0 and min_units is not None else units
            claim_id = ("b" if bulk else "i") + secrets.token_hex(8)  # the script reads the class
            pending.append(ScriptClaim(index, units, claim_id, need, first=position == 0))
        if self._fallback.in_force:
            assert self._fallback.limiter is not None  # noqa: S101 - made when falling back
            return await self._fallback.limiter.acquire(
                claims, min_units=min_units, priority=priority
            )
        recorded = [(claim.index, claim.id) for claim in pending]
        try:
            answer = await self._decide(pending, bulk=bulk)
            while answer is not None and answer.delay > 0:
                # A reservation: sleep until it is due, then decide again at that time, so
                # that a late answer reported meanwhile (or a refusal) is respected.
                await self._clock.sleep(answer.delay)
                answer = await self._decide(pending, again=True, bulk=bulk)
            if answer is None:  # Redis unreachable, fallback on
                assert self._fallback.limiter is not None  # noqa: S101 - _decide's contract
                self._carried.refunds.extend(recorded)  # a reservation made before, if any
                return await self._fallback.limiter.acquire(
                    claims, min_units=min_units, priority=priority
                )
        except BaseException:
            # Cancelled or failed after Redis may have recorded the claims: give them back
            # with the next admission (removing a claim that was never recorded is harmless).
            self._carried.refunds.extend(recorded)
            raise
        granted = next(
            (got for claim, got in zip(pending, answer.granted, strict=True) if claim.first),
            whole,
        )
        started_us, sent = answer.start_us, answer.sent
        binding = self._limits[pending[answer.binding - 1].index - 1][0] if answer.binding else None

        flying = False

        def sending() -> None:
            nonlocal flying
            flying = True
            now = self._clock.now()
            self._carried.flying.extend((index, id_, now) for index, id_ in recorded)

        def settle(timing: ServerTiming | None) -> None:
            self._settle(timing, recorded, started_us, sent, flying=flying)

        return Permit(
            lambda: self._carried.refunds.extend(recorded),
            units=granted,
            settle=settle,
            binding=binding,
            sending=sending,
        )

    def _settle(
        self,
        timing: ServerTiming | None,
        recorded: list[tuple[int, str]],
        started_us: int,
        sent: float,
        *,
        flying: bool,
    ) -> None:
        """The answer of a request admitted at *started_us* (the script's clock) by a
        call made at local time *sent*: what it tells the script with the next call."""
        now = self._answered_at = self._clock.now()  # also for the unit kept for a floor
        # From before the script ran: never too early.
        done_us = started_us + (now - sent) * MICROS
        # When its bytes left, on the script's clock: as late as it can have been.
        left_us = None
        if timing is not None and timing.sent is not None:
            left_us = started_us + (timing.sent - sent) * MICROS
        answer = self._service.answer(timing, started=started_us, done=done_us, sent=left_us)
        if answer.lowered and answer.sample is not None:  # news for the other processes
            self._carried.observations.append((answer.sample, now))
        if answer.anchor is not None:
            anchor_us = math.ceil(answer.anchor)
            self._carried.reports.extend((index, id_, anchor_us, 0) for index, id_ in recorded)
        elif flying:  # the script stops holding it
            self._carried.answered.extend((index, id_, 0, 0) for index, id_ in recorded)
        self._charged.add(recorded, answer, started=started_us, done=done_us)
        if answer.replace is not None:
            self._replace(answer.replace, done_us)

    def _replace(self, floor: float, now_us: float) -> None:
        """The floor in force dropped to *floor*, or came where there was none: this
        process's claims charged against a higher one move later, those charged against
        none earlier (reported with the next call; :func:`._window_rules.moved_anchor`)."""
        spread = self._service.take_spread()
        for recorded, anchor, earlier in self._charged.moved(floor, now_us, spread=spread):
            anchor_us, flag = math.ceil(anchor), 1 if earlier else 0
            self._carried.reports.extend((i, id_, anchor_us, flag) for i, id_ in recorded)

    async def _decide(
        self,
        pending: list[ScriptClaim],
        *,
        again: bool = False,
        bulk: bool = False,
        once: bool = False,
    ) -> Decision | None:
        """One admission decision; ``None`` when Redis is unavailable and the fallback is on.

        With *once*, a single attempt that raises :class:`LimiterUnavailableError` if it
        fails, whatever the fallback. A permanent failure raises :class:`LimiterStoreError`
        at once (``_redis_errors``).
        """
        carried = self._carried.take()
        now = self._clock.now()
        args: list[Any] = [
            "",
            len(self._limits),
            1 if self._cold_start_wait else 0,
            SEEN_TTL_MS,
            self._rate_limits.bulk_headroom,
            self._rate_limits.bulk_min_share,
            -1 if self._answered_at is None else round((now - self._answered_at) * MICROS),
            *self._limit_args,
            *carried.args(now),
        ]
        claim_args: list[Any] = [len(pending), 1 if again else 0, 1 if bulk else 0]
        for claim in pending:
            claim_args += [claim.index, claim.units, claim.id, claim.need]
        keys = self._keys()
        started = now
        # While falling back, one failed attempt is enough to keep falling back.
        patience = 0.0 if self._fallback.active or once else self._unavailable_timeout
        backoff = 0.05
        while True:
            sent = self._clock.now()
            if self._clock_override:  # the time of this attempt, not of the first one
                args[0] = str(round(sent * MICROS))
            handed = self._fallback.handed_back(self._index)  # what it admitted meanwhile
            try:
                self._round_trips += 1
                reply = await self._script(keys=keys, args=[*args, *handed, *claim_args])
            except Exception as exc:
                kind = classify(exc)
                if kind != "transient":
                    self._carried.put_back(carried)  # harmless twice, if it was applied
                    if kind is None:
                        raise
                    raise LimiterStoreError(
                        f"{fix_for(exc, self._prefix)}; nothing was sent"
                    ) from None
                waited = self._clock.now() - started
                # A microsecond of slack: on a float clock the last sleep may fall short.
                if waited >= patience - 1e-6:
                    self._carried.put_back(carried)  # for the first call that works
                    if self._fallback.fraction is None or once:
                        raise LimiterUnavailableError(
                            f"Redis has been unavailable for {waited:.1f} s "
                            f"({type(exc).__name__}: {exc}); nothing was sent. Check the "
                            "Redis server, or give RedisLimiter(fallback=...) to keep "
                            "sending at a fraction of the quota meanwhile"
                        ) from None
                    self._fallback.start(self._rate_limits, exc)
                    return None
                await self._clock.sleep(min(backoff, patience - waited))
                backoff = min(backoff * 2, 1.0)
                continue
            except BaseException:
                # It may or may not have been applied: each is harmless twice.
                self._carried.put_back(carried)
                raise
            self._fallback.returned()
            return self._read_reply(reply, sent)

    def _read_reply(self, reply: list[Any], sent: float) -> Decision:
        """The script's answer to a call made at local time *sent*."""
        delay_us, fresh, now_us, *granted, binding, current, since, previous = reply
        floor = read_floor(current, since, previous)
        # What this process observed since the call left is not in the reply yet.
        for offset, observed in self._carried.observations:
            at = int(now_us) - (self._clock.now() - observed) * MICROS
            floor = observe_floor(floor, offset, at, BUCKET_US)
        before = floor_value(self._service.floor, int(now_us), BUCKET_US)
        self._service.floor = floor
        after = floor_value(floor, int(now_us), BUCKET_US)
        if after < before:  # another process lowered it, or brought the first
            self._replace(after, int(now_us))
        if fresh:
            logger.warning(
                "Redis has no record of recent sends for %s (first use, or it restarted "
                "without its data)%s",
                self._app_key,
                f": nothing starts for one window of each limit ({self._windows}), which "
                "the service may still count sends of before; if no process sent for this "
                "app in that time, skip the wait with RedisLimiter(cold_start_wait=False) "
                "(agora-chat: --cold-start-wait off)"
                if self._cold_start_wait
                else ": cold_start_wait=False, so sending at once",
            )
        return Decision(
            delay=int(delay_us) / MICROS,
            granted=[int(units) for units in granted],
            start_us=int(now_us) + int(delay_us),
            sent=sent,
            binding=int(binding),
        )

    @property
    def _queued(self) -> bool:
        """Whether late answers, refunds or refusals wait to be carried to Redis."""
        return self._carried.urgent and self._app_key is not None

    def penalize(self, claims: Sequence[Claim]) -> None:
        """Lower the shared effective rate (applied with this process's next admission)."""
        now = self._clock.now()
        for name, units in claims:
            index = self._index.get(name)
            if index is not None:
                self._carried.penalties.append((index, units, now))
        if self._fallback.limiter is not None:
            self._fallback.limiter.penalize(claims)

    async def flush(self) -> None:
        """Send queued late answers, refunds and refusals to Redis now, in one round trip.

        One attempt: if Redis is unavailable, or refuses it, they stay queued for the next
        admission (which raises what is wrong).
        """
        if not self._queued or self._fallback.active:
            return
        try:
            await self._decide([], once=True)
        except (LimiterUnavailableError, LimiterStoreError):
            logger.debug("Redis unavailable; late answers stay queued for the next admission")

    async def effective_limit(self, name: LimitName) -> float | None:
        """The limit in force now for *name* across all processes (lower after refusals,
        this process's queued ones sent first); ``None`` when the limit is off.

        Raises:
            LimiterUnavailableError: Redis is unavailable.
            LimiterStoreError: Redis refused it for a reason waiting will not mend.
        """
        index = self._index.get(name)
        if index is None:
            return None
        await self.flush()
        rate = self._limits[index - 1][1]
        state_key = self._keys()[6 * index - 5]
        try:
            eff, hold, now = await self._read_state(state_key)
        except Exception as exc:
            unavailable = "could not read the shared state from Redis"
            raise as_limiter_error(exc, self._prefix, unavailable) from None
        if eff is None:
            return float(rate.limit)
        state = Adaptation(base=float(eff), hold_until=float(hold or 0))
        return effective_limit(state, rate.limit, rate.per * MICROS, now)

    async def _read_state(self, key: str) -> tuple[bytes | str | None, bytes | str | None, float]:
        eff, hold = await self._redis.hmget(key, ["eff", "hold"])
        if self._clock_override:
            now = self._clock.now() * MICROS
        else:
            seconds, micros = await self._redis.time()
            now = seconds * MICROS + micros
        return eff, hold, float(now)

    async def aclose(self) -> None:
        """Carry queued answers, refunds and penalties to Redis; close Redis if it made it."""
        try:
            if self._carried and self._app_key is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._unavailable_timeout):
                    try:
                        await self._decide([])
                    except (LimiterUnavailableError, LimiterStoreError):
                        logger.warning("could not return unused capacity to Redis before closing")
        finally:
            if self._owns_redis:
                self._owns_redis = False
                with anyio.CancelScope(shield=True):
                    await self._redis.aclose()
