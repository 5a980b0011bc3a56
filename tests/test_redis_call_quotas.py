"""The broadcasts' quotas shared through a real redis-server: across processes, across a
restart, and deciding as the in-memory model does (``_redis_call_quotas.lua`` mirrors
``_call_quotas.decide``)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from agora_chat_async import (
    BroadcastLimits,
    DailyLimit,
    LimiterStoreError,
    LimitReachedError,
    Rate,
    RateLimits,
    RedisLimiter,
)
from agora_chat_async._call_quotas import LocalCallQuotas
from agora_chat_async.testing import Emulator, EmulatorServer, MockClock

TEN_AM = datetime(2026, 12, 7, 10, tzinfo=UTC).timestamp()
LIMITS = BroadcastLimits(
    users=(Rate(1, per=1800), DailyLimit(3)),
    online_users=(Rate(2, per=60), DailyLimit(5)),
    rooms=(Rate(1, per=1), Rate(10, per=60), DailyLimit(100)),
    max_wait=0,
)


def shared(redis_client, clock: MockClock, limits: BroadcastLimits = LIMITS, margin=0.25):
    limiter = RedisLimiter(
        redis_client,
        rate_limits=RateLimits(broadcasts=attrs.evolve(limits, margin=margin)),
        app_key="org#app",
        clock=clock,
    )
    return limiter.call_quotas


@pytest.mark.parametrize("seed", range(4))
async def test_redis_decides_as_the_model_does(redis_client, seed):
    """The same reservations, give-backs, exhaustions and clock steps, in memory and in
    Redis: the same grants, the same times a refused call could be made."""
    rng = random.Random(seed)
    local_clock, redis_clock = MockClock(start=TEN_AM), MockClock(start=TEN_AM)
    local = LocalCallQuotas(LIMITS, 0.25, local_clock, unix_time=local_clock.now)
    remote = shared(redis_client, redis_clock)
    held = []
    for _ in range(300):
        kind = rng.choice(("users", "online_users", "rooms"))
        step = rng.choice((0.0, 0.5, 1.0, 30.0, 61.0, 900.0, 3600.0, 6 * 3600.0))
        local_clock.advance(step)
        redis_clock.advance(step)
        action = rng.random()
        if action < 0.75:
            mine = await local.try_reserve(kind, LIMITS.rules(kind))
            theirs = await remote.try_reserve(kind, LIMITS.rules(kind))
            assert (mine[0] is None, mine[2]) == (theirs[0] is None, pytest.approx(theirs[2]))
            if mine[0] is not None:
                held.append((mine[0], theirs[0]))
        elif action < 0.9 and held:
            mine, theirs = held.pop(rng.randrange(len(held)))
            await local.give_back(mine)
            await remote.give_back(theirs)
        else:
            await local.exhaust(kind)
            await remote.exhaust(kind)
        for each in ("users", "online_users", "rooms"):
            assert await local.spent(each) == await remote.spent(each), each


async def test_the_keys_follow_the_limiters_pattern_and_expire(redis_client):
    clock = MockClock(start=TEN_AM)
    quotas = shared(redis_client, clock)
    await quotas.reserve("users")
    keys = sorted(key.decode() for key in await redis_client.keys("*calls*"))
    assert keys == ["agora-chat:{org#app}:calls:users:days", "agora-chat:{org#app}:calls:users:log"]
    for key in keys:
        assert 0 < await redis_client.pttl(key) <= 2 * 86_400_000


async def test_a_redis_that_refuses_the_script_raises_with_the_fix(redis_client, redis_server):
    await redis_client.execute_command(
        "ACL", "SETUSER", "noscript", "on", ">pw", "~*", "+@all", "-evalsha", "-eval"
    )
    import redis.asyncio

    client = redis.asyncio.from_url(redis_server.url.replace("redis://", "redis://noscript:pw@"))
    try:
        quotas = shared(client, MockClock(start=TEN_AM))
        with pytest.raises(LimiterStoreError, match="evalsha"):
            await quotas.reserve("users")
    finally:
        await client.aclose()


def run_workers(server_url: str, redis_url: str, count: int, *, processes: int, daily: bool):
    workers = [
        subprocess.Popen(  # noqa: S603 - our interpreter and our test module
            [
                sys.executable,
                "-m",
                "tests.broadcast_worker",
                server_url,
                redis_url,
                "users",
                str(count),
                "1" if daily else "0",
            ],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        for _ in range(processes)
    ]
    outcomes = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        outcomes += [json.loads(line) for line in out.splitlines()]
    return outcomes


def test_two_processes_share_the_daily_quota_and_a_restart_remembers_it(redis_server):
    """Four broadcasts attempted across two processes in one day: exactly three sent, the
    fourth refused at once with the time it could be sent (the next UTC midnight); a
    process started afterwards on the same Redis is refused too."""
    daily = BroadcastLimits(users=(DailyLimit(3),))
    emulator = Emulator(rate_limits=RateLimits(broadcasts=daily))
    with EmulatorServer(emulator) as server:
        outcomes = run_workers(server.url, redis_server.url, 2, processes=2, daily=True)
        sent = [o for o in outcomes if "sent" in o]
        refused = [o for o in outcomes if "refused" in o]
        assert len(sent) == 3
        assert len(refused) == 1
        now = datetime.now(UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86_400
        assert datetime.fromisoformat(refused[0]["refused"]).timestamp() == midnight
        restarted = run_workers(server.url, redis_server.url, 1, processes=1, daily=True)
        assert restarted == [{"refused": refused[0]["refused"]}]
        assert len(emulator.broadcasts) == 3
        assert sum(emulator.refused.values()) == 0  # the service never had to refuse one


def test_two_processes_share_the_half_hour_and_a_restart_remembers_it(redis_server):
    emulator = Emulator()
    with EmulatorServer(emulator) as server:
        outcomes = run_workers(server.url, redis_server.url, 1, processes=2, daily=False)
        sent = [o for o in outcomes if "sent" in o]
        refused = [o for o in outcomes if "refused" in o]
        assert len(sent) == 1
        assert len(refused) == 1
        restarted = run_workers(server.url, redis_server.url, 1, processes=1, daily=False)
        assert "refused" in restarted[0]
        # Half an hour (and the margin) after the one sent, within a second of each other.
        first = datetime.fromisoformat(refused[0]["refused"]).timestamp()
        again = datetime.fromisoformat(restarted[0]["refused"]).timestamp()
        assert abs(first - again) <= 1
        assert len(emulator.broadcasts) == 1
        assert sum(emulator.refused.values()) == 0


async def test_waiting_is_only_for_calls_within_max_wait(redis_client):
    clock = MockClock(start=TEN_AM)
    limits = BroadcastLimits(rooms=(Rate(1, per=1),), max_wait=5)
    quotas = shared(redis_client, clock, limits, margin=0.0)
    await quotas.reserve("rooms")
    second = await quotas.reserve("rooms")  # waited a second on the test clock
    assert second.at == pytest.approx(TEN_AM + 1)
    limits = BroadcastLimits(users=(Rate(1, per=1800),), max_wait=5)
    quotas = shared(redis_client, clock, limits)
    await quotas.reserve("users")
    with pytest.raises(LimitReachedError):
        await quotas.reserve("users")
