"""The broadcasts' quotas in memory: sliding windows over minutes and half hours, calendar
days, waiting up to ``max_wait``, giving back and exhausting (``_call_quotas.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from agora_chat_async import (
    BroadcastLimits,
    DailyLimit,
    LimitReachedError,
    Rate,
    RateLimits,
    SlidingWindowLimiter,
    ValidationError,
)
from agora_chat_async._call_quotas import LocalCallQuotas, decide, kept_for
from agora_chat_async.testing import MockClock

#: 2026-12-07 10:00:00 UTC.
TEN_AM = datetime(2026, 12, 7, 10, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 12, 8, tzinfo=UTC).timestamp()


def quotas(limits: BroadcastLimits, *, start: float = TEN_AM, margin: float = 0.0):
    clock = MockClock(start=start)
    return LocalCallQuotas(limits, margin, clock, unix_time=clock.now), clock


def test_decide_finds_when_the_oldest_call_leaves_the_window():
    rules = (Rate(2, per=60),)
    assert decide([], 0, rules, now=100.0, margin=0.5, offset=0) == 100.0
    assert decide([50.0], 0, rules, now=100.0, margin=0.5, offset=0) == 100.0
    # Two calls in the window: the first must leave (at 50 + 60.5) for a third.
    assert decide([50.0, 90.0], 0, rules, now=100.0, margin=0.5, offset=0) == 110.5
    # A call exactly a window (with its margin) ago has left it.
    assert decide([39.5, 90.0], 0, rules, now=100.0, margin=0.5, offset=0) == 100.0


def test_decide_waits_for_the_next_day_when_the_day_is_spent():
    rules = (DailyLimit(3),)
    assert decide([], 2, rules, now=TEN_AM, margin=0, offset=0) == TEN_AM
    assert decide([], 3, rules, now=TEN_AM, margin=0, offset=0) == MIDNIGHT
    # A day in UTC+8 starts at 16:00 UTC.
    east = decide([], 3, rules, now=TEN_AM, margin=0, offset=8 * 3600)
    assert datetime.fromtimestamp(east, UTC) == datetime(2026, 12, 7, 16, tzinfo=UTC)


async def test_one_call_in_30_minutes_and_three_a_day():
    book, clock = quotas(BroadcastLimits(max_wait=0))
    first = await book.reserve("users")
    assert first.at == TEN_AM
    with pytest.raises(LimitReachedError) as refused:
        await book.reserve("users")
    assert refused.value.available_at == datetime.fromtimestamp(TEN_AM + 1800, UTC)
    assert "broadcast to all users: 1 per 1800 s, 3 a day (UTC days)" in str(refused.value)
    assert "2026-12-07T10:30:00+00:00" in str(refused.value)
    clock.advance(1800)
    await book.reserve("users")
    clock.advance(1800)
    await book.reserve("users")
    clock.advance(1800)  # 11:30: the fourth of the day
    with pytest.raises(LimitReachedError) as refused:
        await book.reserve("users")
    assert refused.value.available_at == datetime.fromtimestamp(MIDNIGHT, UTC)
    assert await book.spent("users") == (0, 3)  # the 11:00 call left its half hour now
    clock.advance(MIDNIGHT - clock.now())  # a new UTC day
    await book.reserve("users")
    assert await book.spent("users") == (1, 1)


async def test_a_call_that_fits_within_max_wait_waits_for_it():
    book, clock = quotas(BroadcastLimits(max_wait=60))
    await book.reserve("rooms")  # 1 a second, 10 a minute
    second = await book.reserve("rooms")
    assert second.at == TEN_AM + 1  # it waited a second on the clock
    for _ in range(8):
        await book.reserve("rooms")
    eleventh = await book.reserve("rooms")  # the minute's tenth left at 10:01:00
    assert eleventh.at == TEN_AM + 60
    assert clock.now() == TEN_AM + 60


async def test_a_call_given_back_frees_its_place_and_its_day():
    book, _ = quotas(BroadcastLimits(users=(DailyLimit(1),), max_wait=0))
    reservation = await book.reserve("users")
    with pytest.raises(LimitReachedError):
        await book.reserve("users")
    await book.give_back(reservation)
    await book.give_back(reservation)  # twice is harmless: the day is not counted below 0
    assert await book.spent("users") == (0, 0)
    await book.reserve("users")


async def test_exhausting_spends_the_rest_of_the_day():
    book, clock = quotas(BroadcastLimits(online_users=(DailyLimit(50),), max_wait=0))
    await book.exhaust("online_users")
    with pytest.raises(LimitReachedError) as refused:
        await book.reserve("online_users")
    assert refused.value.available_at == datetime.fromtimestamp(MIDNIGHT, UTC)
    clock.advance(MIDNIGHT - TEN_AM)
    await book.reserve("online_users")


async def test_days_follow_the_configured_zone():
    zone = timezone(timedelta(hours=8))
    limits = BroadcastLimits(users=(DailyLimit(1),), max_wait=0, day_zone=zone)
    book, clock = quotas(limits)
    await book.reserve("users")
    with pytest.raises(LimitReachedError) as refused:
        await book.reserve("users")
    # 10:00 UTC is 18:00 in UTC+8: that day ends at 00:00 UTC+8, 16:00 UTC.
    assert refused.value.available_at == datetime(2026, 12, 7, 16, tzinfo=UTC)
    assert "UTC+08:00 days" in str(refused.value)
    clock.advance(6 * 3600)
    await book.reserve("users")


def test_limits_are_checked_when_built():
    with pytest.raises(ValidationError, match="at most one DailyLimit"):
        BroadcastLimits(users=(DailyLimit(3), DailyLimit(4)))
    with pytest.raises(ValidationError, match="tuple of Rate and DailyLimit"):
        BroadcastLimits(users=[Rate(1, per=1800)])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"datetime\.timezone"):
        BroadcastLimits(day_zone="Asia/Shanghai")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DailyLimit(0)


def test_a_call_is_kept_at_least_a_minute():
    assert kept_for((DailyLimit(3),), 0.0) == 60.0
    assert kept_for((Rate(1, per=1800), DailyLimit(3)), 0.5) == 1800.5


async def test_every_limiter_has_call_quotas_from_its_rate_limits():
    limits = RateLimits(broadcasts=BroadcastLimits(users=(DailyLimit(7),), max_wait=0))
    clock = MockClock()
    limiter = SlidingWindowLimiter(limits, clock=clock)
    assert limiter.call_quotas is limiter.call_quotas
    assert limiter.call_quotas.limits.users == (DailyLimit(7),)
    # Its days are Unix time's: now, moving as the limiter's clock moves.
    for _ in range(7):
        await limiter.call_quotas.reserve("users")
    with pytest.raises(LimitReachedError) as refused:
        await limiter.call_quotas.reserve("users")
    at = refused.value.available_at
    assert (at.hour, at.minute, at.second) == (0, 0, 0)
    assert 0 < (at - datetime.now(UTC)).total_seconds() <= 86_400
    clock.advance(86_400)
    await limiter.call_quotas.reserve("users")
