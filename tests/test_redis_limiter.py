"""RedisLimiter against a real redis-server: exact decisions on a controlled clock, sharing,
refunds, cancellation, adaptation, an unreachable or restarted Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora_chat_async import (
    AgoraChatClient,
    Claim,
    JobProgress,
    LimiterStoreError,
    LimiterUnavailableError,
    Rate,
    RateLimits,
    RedisLimiter,
    RedisProgressStore,
    ServerTiming,
    SlidingWindowLimiter,
    StaticToken,
    TextBody,
    ValidationError,
)
from agora_chat_async._redis_script import SCRIPT as _SCRIPT
from agora_chat_async.testing import Emulator, EmulatorServer, MockClock, RedisServer
from agora_chat_async.testing._server import free_port

from .clocks import InstantClock, SteppedClock
from .scenarios import Start, admit_all, arrivals, most_in_any_window, saturate

LIMITS = RateLimits(
    users=Rate(10, per=1),
    groups=Rate(3, per=1),
    rooms=Rate(5, per=1),
    other=Rate(5, per=1),
    send_calls=Rate(4, per=1),
    margin=0,
)


class ParkingClock(InstantClock):
    """Virtual time that does not move: an acquire that must wait records its reservation
    and parks there (its claims stay reserved in Redis) until the test cancels it."""

    def __init__(self) -> None:
        super().__init__()
        self.parked = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.parked.set()
        await anyio.sleep_forever()


async def reserve(
    tg: anyio.abc.TaskGroup,
    shared: RedisLimiter,
    clock: ParkingClock,
    claims: Sequence[Claim],
    **kwargs: Any,
) -> float:
    """How long *claims* must wait: 0, or the reservation they are parked on."""
    before = len(clock.sleeps)
    clock.parked = finished = anyio.Event()

    async def run() -> None:
        await shared.acquire(claims, **kwargs)
        finished.set()

    tg.start_soon(run)
    await finished.wait()
    return sum(clock.sleeps[before:])


def limiter(client: Any, clock: Any, **kwargs: Any) -> RedisLimiter:
    options: dict[str, Any] = {
        "rate_limits": LIMITS,
        "app_key": "org#app",
        "cold_start_wait": False,
        "clock": clock,
    }
    return RedisLimiter(client, **(options | kwargs))


async def waits(limiter: RedisLimiter, clock: MockClock, claims: Sequence[Claim]) -> float:
    """How long *claims* had to wait."""
    before = len(clock.sleeps)
    await limiter.acquire(claims)
    return sum(clock.sleeps[before:])


async def test_claims_fit_until_the_window_is_full_then_wait_for_exact_expiry(redis_client):
    clock = MockClock()
    shared = limiter(redis_client, clock)
    assert await waits(shared, clock, [("users", 6)]) == 0
    clock.advance(0.25)
    assert await waits(shared, clock, [("users", 4)]) == 0
    # The 6 units of t=0 leave the window at t=1.0: 0.75 s from now.
    assert await waits(shared, clock, [("users", 5)]) == pytest.approx(0.75, abs=1e-6)
    # One round trip to start at once; a reservation is decided again when it is due.
    assert shared._round_trips == 4


async def test_margin_widens_every_window(redis_client):
    clock = MockClock()
    shared = limiter(redis_client, clock, rate_limits=RateLimits(users=Rate(2, per=1), margin=0.1))
    await shared.acquire([("users", 2)])
    assert await waits(shared, clock, [("users", 1)]) == pytest.approx(1.1, abs=1e-6)


async def test_processes_share_one_quota(redis_client):
    clock = ParkingClock()
    first, second = limiter(redis_client, clock), limiter(redis_client, clock)
    async with anyio.create_task_group() as tg:
        await first.acquire([("users", 7)])
        assert await reserve(tg, second, clock, [("users", 3)]) == 0
        assert await reserve(tg, second, clock, [("users", 1)]) == pytest.approx(1.0, abs=1e-6)
        tg.cancel_scope.cancel()


async def test_reservations_are_first_come_first_served_across_processes(redis_client):
    clock = ParkingClock()
    small, big = limiter(redis_client, clock), limiter(redis_client, clock)
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            await small.acquire([("users", 1)])
            clock.advance(0.01)
        # At t=0.10 the 10-unit claim is reserved for when the window has emptied (1.09)...
        assert await reserve(tg, big, clock, [("users", 10)]) == pytest.approx(0.99, abs=1e-6)
        # ...and a 1-unit claim that arrives after it is not served before it leaves (2.09),
        # although the first 1-unit claim leaves the window at 1.00.
        assert await reserve(tg, small, clock, [("users", 1)]) == pytest.approx(1.99, abs=1e-6)
        tg.cancel_scope.cancel()


async def test_a_request_waiting_for_one_limit_does_not_hold_the_others(redis_client):
    clock = ParkingClock()
    users, groups = limiter(redis_client, clock), limiter(redis_client, clock)
    async with anyio.create_task_group() as tg:
        await users.acquire([("users", 10), ("send_calls", 1)])
        # A user send waits for recipient quota: only its "users" claim is reserved meanwhile.
        assert await reserve(tg, users, clock, [("users", 10), ("send_calls", 1)]) > 0
        assert await reserve(tg, groups, clock, [("groups", 3), ("send_calls", 1)]) == 0
        tg.cancel_scope.cancel()


async def test_a_shrinkable_claim_takes_what_fits_at_its_time(redis_client):
    clock = MockClock()
    first, second = limiter(redis_client, clock), limiter(redis_client, clock)
    await first.acquire([("users", 8)])
    permit = await second.acquire([("users", 5), ("send_calls", 1)], min_units=1)
    assert (permit.units, clock.sleeps) == (2, [])
    # Nothing is left now: reserved for when the 8 leave, with all 5 units then.
    permit = await second.acquire([("users", 5)], min_units=3)
    assert permit.units == 5
    assert clock.sleeps == [pytest.approx(1.0, abs=1e-6)]
    with pytest.raises(ValidationError, match="min_units"):
        await second.acquire([("users", 5)], min_units=6)


async def test_claims_larger_than_the_limit_are_refused_at_once(redis_client):
    shared = limiter(redis_client, MockClock())
    with pytest.raises(ValidationError, match="can never start"):
        await shared.acquire([("users", 11)])
    assert shared._round_trips == 0


async def test_refunds_ride_on_the_next_admission(redis_client):
    clock = MockClock()
    first, second = limiter(redis_client, clock), limiter(redis_client, clock)
    permit = await first.acquire([("users", 10)])
    permit.refund()
    permit.refund()  # idempotent
    # The refund is carried by first's next decision, in the same round trip.
    assert await waits(first, clock, [("users", 4)]) == 0
    assert await waits(second, clock, [("users", 6)]) == 0
    assert first._round_trips == 2


async def test_a_cancelled_wait_returns_its_reservation(redis_client):
    clock = MockClock()
    shared = limiter(redis_client, clock)
    await shared.acquire([("users", 10)])

    waiting = anyio.Event()

    class Forever(InstantClock):
        async def sleep(self, seconds: float) -> None:
            waiting.set()
            await anyio.sleep_forever()

    stuck = limiter(redis_client, Forever(clock.now()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(stuck.acquire, [("users", 10)])  # reserved for t=1.0...
        await waiting.wait()
        tg.cancel_scope.cancel()  # ...then cancelled while it waits
    clock.advance(1.0)
    # The cancelled reservation is refunded with stuck's next decision.
    await stuck.aclose()
    assert await waits(shared, clock, [("users", 10)]) == 0


async def test_a_refusal_lowers_the_rate_of_every_process(redis_client):
    clock = MockClock()
    first, second = limiter(redis_client, clock), limiter(redis_client, clock)
    await first.acquire([("users", 6)])
    clock.advance(0.5)
    # The service refused 2 more with 6 accepted, far from the limit: its limit is lower.
    first.penalize([("users", 2)])
    clock.advance(0.1)
    await first.aclose()  # carries the penalty (with its time: 0.1 s ago)
    clock.advance(1.0)
    # 95% of 6 is 5.7: five units a window now, for every process.
    assert await waits(second, clock, [("users", 5)]) == 0
    assert await waits(second, clock, [("users", 1)]) == pytest.approx(1.0, abs=1e-6)
    # After the hold (8 windows) the rate grows back by 5% of the limit per window.
    clock.advance(30)
    assert await waits(second, clock, [("users", 10)]) == 0


async def test_a_refusal_of_a_full_window_widens_the_window_instead(redis_client):
    clock = MockClock()
    first, second = limiter(redis_client, clock), limiter(redis_client, clock)
    await first.acquire([("users", 4)])
    clock.advance(0.5)
    await first.acquire([("users", 6)])
    clock.advance(0.55)  # the 4 left the window 0.05 s ago
    permit = await first.acquire([("users", 4)])
    # Refused with the window full (6 + these 4) and 4 that had just left: the server still
    # counted them. The transport refunds the refused request, then penalizes.
    permit.refund()
    first.penalize([("users", 4)])
    await first.aclose()
    clock.advance(0.455)  # t = 1.505: the 6 of t = 0.5 left a plain window at 1.5
    # The rate is intact, but every window is now 1% of per (0.01 s) wider: they leave at 1.51.
    assert await waits(second, clock, [("users", 5)]) == pytest.approx(0.005, abs=1e-6)


async def test_unreachable_redis_raises_after_the_timeout_and_sends_nothing(caplog):
    client = redis.asyncio.from_url(f"redis://127.0.0.1:{free_port()}/0")
    clock = MockClock()
    shared = limiter(client, clock, unavailable_timeout=0.3)
    with pytest.raises(LimiterUnavailableError, match="nothing was sent"):
        await shared.acquire([("users", 1)])
    # It retried with backoff for exactly unavailable_timeout on its clock, then gave up.
    assert sum(clock.sleeps) == pytest.approx(0.3)
    assert shared._round_trips == len(clock.sleeps) + 1
    await client.aclose()


async def test_unreachable_redis_falls_back_to_a_fraction_when_asked(caplog):
    client = redis.asyncio.from_url(f"redis://127.0.0.1:{free_port()}/0")
    clock = MockClock()
    shared = limiter(client, clock, unavailable_timeout=0.2, fallback=0.5)
    with caplog.at_level(logging.WARNING, logger="agora_chat_async"):
        # Retried for unavailable_timeout, then granted by the fallback at once.
        assert await waits(shared, clock, [("users", 5)]) == pytest.approx(0.2)
    assert "50% of the quota" in caplog.text
    # Half of 10 a second: the next unit waits for the window.
    assert await waits(shared, clock, [("users", 1)]) == pytest.approx(1.0, abs=1e-6)
    await client.aclose()


@pytest.mark.parametrize("fallback", [0.0, 1.5])
async def test_fallback_must_be_a_fraction(redis_client, fallback):
    with pytest.raises(ValidationError, match="fallback"):
        RedisLimiter(redis_client, fallback=fallback)


async def test_the_client_names_the_keys_after_its_app(redis_client, agora_emulator_server):
    shared = RedisLimiter(redis_client, cold_start_wait=False)
    async with AgoraChatClient(
        agora_emulator_server.url,
        "test-org",
        "test-app",
        auth=StaticToken("test-token"),
        limiter=shared,
    ) as client:
        await client.send_user_message("alice", TextBody(msg="hello"))
    keys = {key.decode() for key in await redis_client.keys("*")}
    assert "agora-chat:{test-org#test-app}:users:log" in keys
    with pytest.raises(ValidationError, match="test-org#test-app"):
        shared.bind_app("other-org", "other-app")


async def test_restart_without_data_waits_one_window_and_never_bursts(redis_server, caplog):
    client = redis.asyncio.from_url(redis_server.url)
    clock = MockClock()
    shared = limiter(client, clock, cold_start_wait=True, unavailable_timeout=5)
    starts: list[float] = []
    with caplog.at_level(logging.WARNING, logger="agora_chat_async"):
        for index in range(60):
            if index == 25:
                redis_server.restart()
            await shared.acquire([("users", 1)])
            starts.append(clock.now())
            clock.advance(0.05)
    await client.aclose()
    assert caplog.text.count("no record of recent sends") == 2  # first use, then the restart
    # It says how long and how to skip it.
    assert "one window of each limit (users, groups, rooms, send_calls, other 1 s)" in caplog.text
    assert "RedisLimiter(cold_start_wait=False) (agora-chat: --cold-start-wait off)" in caplog.text
    assert_within_limit(starts, [1] * len(starts), limit=10, per=1.0)


async def test_an_admission_survives_redis_coming_back(redis_server):
    class BringsRedisBack(InstantClock):
        """The limiter's first wait to retry is when Redis comes back."""

        async def sleep(self, seconds: float) -> None:
            if not self.sleeps:
                await anyio.to_thread.run_sync(redis_server.start)
            await super().sleep(seconds)

    client = redis.asyncio.from_url(redis_server.url)
    clock = BringsRedisBack()
    shared = limiter(client, clock, unavailable_timeout=10)
    await shared.acquire([("users", 1)])
    redis_server.stop()
    await shared.acquire([("users", 1)])  # fails, waits to retry, succeeds
    assert clock.sleeps, "the first attempt met a stopped Redis"
    await client.aclose()


def assert_within_limit(starts: list[float], units: list[int], *, limit: int, per: float) -> None:
    """No interval of length *per* (closed at its end) holds more than *limit* units.

    Times are compared in whole microseconds, as the limiter records them.
    """
    events = sorted(zip((round(t * 1e6) for t in starts), units, strict=True))
    span = round(per * 1e6)
    for end, _ in events:
        inside = sum(u for t, u in events if end - span < t <= end)
        assert inside <= limit, f"{inside} units in the window ending at {end}"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrivals=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.001, 0.05, 0.3, 1.0]),
            st.integers(1, 10),
            st.integers(0, 2),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_no_window_ever_exceeds_the_limit_for_any_arrivals(redis_server, arrivals):
    """Three processes, any gaps and sizes: every reservation keeps every window within limit."""

    async def scenario() -> None:
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()
        clock = ParkingClock()
        limiters = [limiter(client, clock) for _ in range(3)]
        schedule: dict[str, tuple[float, int]] = {}  # claim id: start, units (as in Redis)
        order: list[str] = []  # claim ids in arrival order
        tag = "agora-chat:{org#app}:users"
        async with anyio.create_task_group() as tg:
            for gap, size, who in arrivals:
                clock.advance(gap)
                # Process 2 sends shrinkable claims (a fan-out), the others whole ones.
                await reserve(
                    tg, limiters[who], clock, [("users", size)], min_units=1 if who == 2 else None
                )
                log = await client.zrange(f"{tag}:log", 0, -1, withscores=True)
                units = await client.hgetall(f"{tag}:units")
                for claim_id, score in log:
                    schedule[claim_id] = (score / 1e6, int(float(units[claim_id])))
                order += [claim_id for claim_id, _ in log if claim_id not in order]
            tg.cancel_scope.cancel()
        await client.aclose()
        starts = [schedule[claim_id][0] for claim_id in order]
        assert_within_limit(
            starts, [schedule[claim_id][1] for claim_id in order], limit=10, per=1.0
        )
        # First come, first served: start times (in whole microseconds) follow arrival order.
        micros = [round(start * 1e6) for start in starts]
        assert micros == sorted(micros)

    asyncio.run(scenario())


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headroom=st.sampled_from([0.0, 0.2]),
    min_share=st.sampled_from([0.0, 0.5, 1.0]),
    arrivals=arrivals(ticks=40, units=10, most=20),
)
def test_two_processes_interleaving_interactive_and_bulk_claims_keep_every_window(
    redis_server, headroom, min_share, arrivals
):
    """A web process and a worker (alternate arrivals) on one Redis, concurrently, any sizes
    and priorities: every claim is admitted, and no window ever holds over the limit."""

    async def scenario() -> list[Start]:
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()
        clock = SteppedClock(start=0.0)
        rate_limits = attrs.evolve(LIMITS, bulk_headroom=headroom, bulk_min_share=min_share)
        limiters = [limiter(client, clock, rate_limits=rate_limits) for _ in "ab"]
        try:
            return await admit_all(limiters, clock, arrivals)
        finally:
            await client.aclose()

    starts = asyncio.run(scenario())
    assert len(starts) == len(arrivals)
    assert most_in_any_window(starts, per=1) <= 10


def test_a_web_process_within_the_headroom_never_waits_for_a_saturating_worker(redis_server):
    """Three fan-out tasks in a worker process keep bulk work queued on one Redis; a web
    process sends single messages, at most the headroom (2 of 10) in any window: none waits."""
    times = [0.25, 0.5, 1.3, 1.4, 2.5, 3.0, 3.4, 4.1]
    rate_limits = attrs.evolve(LIMITS, bulk_headroom=0.2, send_calls=None)

    async def scenario() -> list[Start]:
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()
        clock = SteppedClock(start=0.0)
        worker, web = (limiter(client, clock, rate_limits=rate_limits) for _ in "ab")
        try:
            return await saturate(worker, web, clock, times, [3, 7, 10, 1])
        finally:
            await client.aclose()

    starts = asyncio.run(scenario())
    interactive = sorted((at, start) for at, start, _, p in starts if p == "interactive")
    assert interactive == [(t, t) for t in times]
    assert most_in_any_window(starts, per=1) == 10  # saturated, never over
    assert sum(u for _, _, u, p in starts if p == "bulk") >= 8 * 4  # bulk kept its 8 a window


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrivals=st.lists(
        st.tuples(st.sampled_from([0.0, 0.01, 0.2, 0.7]), st.integers(1, 10)),
        min_size=1,
        max_size=30,
    )
)
def test_every_limit_of_a_request_holds_at_once(redis_server, arrivals):
    """Requests claiming recipients and a call each: both limits hold at every start."""

    async def scenario() -> None:
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()
        clock = MockClock()
        shared = limiter(client, clock)
        starts, units = [], []
        for gap, size in arrivals:
            clock.advance(gap)
            await shared.acquire([("users", size), ("send_calls", 1)])
            starts.append(clock.now())
            units.append(size)
        await client.aclose()
        assert_within_limit(starts, units, limit=10, per=1.0)
        assert_within_limit(starts, [1] * len(starts), limit=4, per=1.0)

    asyncio.run(scenario())


@pytest.mark.parametrize("store", ["redis_server", "redis_cluster"])
def test_worker_processes_share_one_quota_against_the_emulator(store, request):
    """Three processes, one app key, one Redis (a server, or a three-master Cluster): no
    429 from a strict sliding window."""
    url = request.getfixturevalue(store).url
    if store == "redis_cluster":
        url = "cluster+" + url
    limits = RateLimits(users=Rate(60, per=0.5), margin=0.1)
    emulator = Emulator(rate_limits=limits, policy="sliding")
    with EmulatorServer(emulator) as server:
        workers = [
            subprocess.Popen(  # noqa: S603 - our interpreter and our test module
                [
                    sys.executable,
                    "-m",
                    "tests.redis_worker",
                    server.url,
                    url,
                    f"w{index}",
                    "60",
                    "10",
                    "60",
                    "0.5",
                    "0.1",
                ],
                stdout=subprocess.PIPE,
                cwd=Path(__file__).parent.parent,
            )
            for index in range(3)
        ]
        outputs = [json.loads(worker.communicate(timeout=60)[0]) for worker in workers]
        stats = emulator.stats()
    assert all(worker.returncode == 0 for worker in workers)
    assert sum(out["delivered"] for out in outputs) == 180
    assert stats["deliveries"] == 180
    assert stats["duplicates"] == 0
    assert sum(stats["refused"].values()) == 0
    # Per request: the admission, one more when a reservation is due, one to report a late
    # answer (slower than margin / 2: a loaded machine).
    assert all(out["round_trips"] <= 3 * 6 for out in outputs), outputs


def test_without_redis_server_the_tests_skip_or_fail_as_configured(monkeypatch):
    from tests.conftest import require_redis_server

    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("AGORA_CHAT_REQUIRE_REDIS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        require_redis_server()
    monkeypatch.setenv("AGORA_CHAT_REQUIRE_REDIS", "1")
    with pytest.raises(pytest.fail.Exception, match="AGORA_CHAT_REQUIRE_REDIS=1"):
        require_redis_server()
    with pytest.raises(FileNotFoundError, match="apt-get install redis-server"):
        RedisServer()


async def test_the_documented_shared_limiter_test_runs(redis_server):
    """docs/testing.md's example, as written (with this test's redis-server)."""
    emulator = Emulator()
    store = redis.asyncio.from_url(redis_server.url)
    limiter = RedisLimiter(store, cold_start_wait=False)
    async with emulator.client(limiter=limiter) as client:
        result = await client.send_user_message("alice", TextBody(msg="hi"))
    await store.aclose()
    assert result.ok
    assert emulator.delivered_count == 1


@pytest.mark.parametrize("late", [0, 1, 2, 3])
async def test_a_late_answer_in_the_first_window_keeps_every_start_order_within_the_limit(
    redis_client, late
):
    """Two processes start together from a cold Redis, two requests each (5 of 10 units).

    The first window's requests are reserved for the end of the cold-start wait, the
    second window's for when they leave it; one first-window request is answered late
    (0.2 s), the others at once. The service may count a request as late as its answer:
    counted so, no window of one second may hold more than 10 units, whichever process
    asked first. (Before late answers kept claims in the window, the second window's
    requests started 1.02 s after the first window's, and one landed 0.8 s after a
    request the server counted late: 15 units.)
    """
    clock = SteppedClock()
    rate_limits = attrs.evolve(LIMITS, margin=0.02)
    a, b = (
        limiter(redis_client, clock, cold_start_wait=True, rate_limits=rate_limits) for _ in "ab"
    )
    order = [(a, 0), (b, 1), (a, 2), (b, 3)][late:] + [(a, 0), (b, 1), (a, 2), (b, 3)][:late]
    counted: list[tuple[float, int]] = []

    async def send(shared: RedisLimiter, request: int) -> None:
        try:
            permit = await shared.acquire([("users", 5)])
            first_window = clock.now() < 1000 + 2 * 1.02
            await clock.sleep(0.2 if request == late and first_window else 0.001)  # in flight
            counted.append((clock.now(), 5))  # the service counts it as late as its answer
            permit.settle()
            await shared.flush()
        finally:
            clock.done()

    async with anyio.create_task_group() as tg:
        for shared, request in order:  # a controlled start order: one at a time
            clock.running += 1
            tg.start_soon(send, shared, request)
            await clock.all_asleep()
        await clock.run()
    assert len(counted) == 4
    times = [t for t, _ in counted]
    assert_within_limit(times, [u for _, u in counted], limit=10, per=1.0)


async def test_a_refund_after_the_claim_left_the_window_frees_nothing_twice(redis_client):
    clock = MockClock()
    shared = limiter(redis_client, clock)
    first = await shared.acquire([("users", 10)])
    clock.advance(1.5)
    await shared.acquire([("users", 10)])  # the first left the window
    first.refund()  # refused long after: carried by the next admission
    assert await waits(shared, clock, [("users", 1)]) == pytest.approx(1.0, abs=1e-6)


async def test_a_call_retried_after_its_reply_was_lost_counts_its_claims_once(redis_client):
    clock = MockClock()
    shared = limiter(redis_client, clock)
    script = shared._script

    async def reply_lost_once(**kwargs: Any) -> Any:
        if kwargs["args"][-4:-2] == [1, 5]:  # the first admission of 5 units: run it twice
            await script(**kwargs)
        return await script(**kwargs)

    shared._script = reply_lost_once
    await shared.acquire([("users", 5)])
    shared._script = script
    assert await waits(shared, clock, [("users", 5)]) == 0  # 5 counted, not 10


async def test_the_permit_names_the_limit_left_with_the_least_room(redis_client):
    clock = MockClock()
    for each in (limiter(redis_client, clock), SlidingWindowLimiter(LIMITS, clock=clock)):
        permit = await each.acquire([("users", 2), ("send_calls", 1)])
        assert permit.binding == "send_calls"  # 3 of 4 calls left, 8 of 10 users
        permit = await each.acquire([("users", 7), ("send_calls", 1)])
        assert permit.binding == "users"  # 1 of 10 users left, 2 of 4 calls
        clock.advance(5)


async def test_the_script_keeps_the_headroom_before_any_interactive_request(redis_client):
    clock = MockClock()
    worker = limiter(redis_client, clock, rate_limits=attrs.evolve(LIMITS, bulk_headroom=0.2))
    dedicated = limiter(redis_client, clock, rate_limits=attrs.evolve(LIMITS, bulk_headroom=0))
    assert (await worker.acquire([("users", 10)], min_units=1, priority="bulk")).units == 8
    # A worker that only sends bulk (headroom 0) may take what the other left free.
    assert (await dedicated.acquire([("users", 10)], min_units=1, priority="bulk")).units == 2


async def test_the_script_keeps_interactive_requests_ahead_of_bulk_work(redis_client):
    clock = ParkingClock()
    rate_limits = attrs.evolve(LIMITS, bulk_headroom=0.2, bulk_min_share=0.6)
    web, worker = (limiter(redis_client, clock, rate_limits=rate_limits) for _ in "ab")
    async with anyio.create_task_group() as tg:
        await web.acquire([("users", 1)])  # a web send
        permit = await worker.acquire([("users", 10)], min_units=1, priority="bulk")
        assert permit.units == 7  # bulk leaves 20% of the window free
        # More bulk work is reserved for when the window has room...
        assert await reserve(tg, worker, clock, [("users", 5)], priority="bulk") == pytest.approx(
            1.0, abs=1e-6
        )
        # ...and an interactive send does not queue behind it: it takes the headroom now.
        assert await reserve(tg, web, clock, [("users", 2)]) == 0
        # While bulk waits, interactive sends may hold 40% of the window (3 of 4 are used):
        # this one queues behind the bulk reservation.
        assert await reserve(tg, web, clock, [("users", 2)]) >= 1.0
        tg.cancel_scope.cancel()


async def test_a_limiter_made_from_a_url_owns_its_client_and_closes_it(redis_server):
    watcher = redis.asyncio.from_url(redis_server.url)
    try:
        before = len(await watcher.client_list())
        shared = RedisLimiter.from_url(redis_server.url, app_key="org#app", cold_start_wait=False)
        await shared.acquire([("users", 1)])
        assert len(await watcher.client_list()) == before + 1  # the limiter's connection
        await shared.aclose()
        with anyio.fail_after(5):
            while len(await watcher.client_list()) != before:  # noqa: ASYNC110 - polls the server
                await anyio.sleep(0.01)
    finally:
        await watcher.aclose()
    with pytest.raises(ValidationError, match=r"^redis_url: is not a Redis URL"):
        RedisLimiter.from_url("http://127.0.0.1:1")


async def test_an_answer_is_never_anchored_after_the_scripts_clock(redis_client):
    """A late answer's time is an upper bound on this process's clock (it counts the
    call's way to Redis), so it may be after Redis's own clock when the call carrying it
    runs; a started claim anchored there would look like a reservation to a due one."""
    clock = MockClock(start=0.0, autojump=False)
    quota = RateLimits(users=Rate(10, per=1), margin=0.0, bulk_headroom=0.0)
    shared = limiter(redis_client, clock, rate_limits=quota)
    await shared.acquire([("users", 4)])
    late = await shared.acquire([("users", 6)])  # the window is full
    late.sending()
    started: list[float] = []

    async def queued() -> None:
        await shared.acquire([("users", 6)])
        started.append(clock.now())

    script = shared._script

    async def io() -> None:  # the Redis calls of the woken task take real time
        for _ in range(10):
            await anyio.sleep(0.005)

    async def redis_clock_behind(**kwargs: Any) -> Any:
        kwargs["args"][0] = str(round(clock.now() * 1_000_000) - 50_000)  # 50 ms behind
        return await script(**kwargs)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(queued)  # reserved for t=1.0, when both claims leave
            await io()
            clock.advance(1.05)
            late.settle()  # answered at 1.05: its claim stays until 2.0 at least
            shared._script = redis_clock_behind  # the due call runs at 1.0 on Redis's clock
            while not started and clock.now() < 3:
                await io()
                clock.advance(0.01)
    # 6 + 6 do not fit in 10: the queued claim waits for the answered one to leave.
    assert started[0] >= 2.0


async def test_a_reservation_due_after_a_restart_waits_the_cold_start_window(redis_server):
    client = redis.asyncio.from_url(redis_server.url)
    await client.flushdb()
    clock = MockClock(start=0.0, autojump=False)
    quota = RateLimits(users=Rate(10, per=1), margin=0.0, bulk_headroom=0.0)
    shared = limiter(client, clock, rate_limits=quota, cold_start_wait=False)
    await shared.acquire([("users", 10)])  # the window is full until 1.0
    started: list[float] = []

    async def queued() -> None:
        await shared.acquire([("users", 5)])
        started.append(clock.now())

    async def io() -> None:  # the woken task's Redis calls take real time
        for _ in range(10):
            await anyio.sleep(0.005)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(queued)  # reserved for t=1.0
            await io()
            redis_server.restart()  # the window's sends are gone with Redis's data
            shared._cold_start_wait = True
            while not started and clock.now() < 3:
                clock.advance(0.05)
                await io()
    await client.aclose()
    # Redis no longer knows of the 10 units of t=0: nothing starts for a window after it
    # noticed (at the reservation's due time, 1.0).
    assert started[0] >= 2.0


#: The script, counting what its Redis commands return (the elements of every reply): the
#: work of a call, exactly, where a scan of the log reads every claim of the window.
_COUNTING = (
    "local read = 0\n"
    "local function counted_call(...)\n"
    "  local reply = redis.call(...)\n"
    "  if type(reply) == 'table' then read = read + #reply end\n"
    "  return reply\n"
    "end\n"
    + _SCRIPT.replace("redis.call(", "counted_call(").replace(
        "return reply", "redis.call('INCRBY', KEYS[1] .. ':read', read)\nreturn reply"
    )
)


async def _production_calls(client: Any, claims: int, *, measured: int = 100) -> dict[str, Any]:
    """A users window of *claims* a minute filled by single-recipient sends, each answered
    as a web handler's is; then *measured* admissions at twice that rate (each waits), every
    tenth a bulk claim of a tenth of the window that may shrink, and one refusal. What the
    measured calls cost Redis: elements read per call (``_COUNTING``). How long they take
    is a timing, measured in ``benchmarks/_redis_cost.py`` (``--only redis-cost``: CPU per
    admission and the slowest call, from SLOWLOG), not asserted here."""
    await client.flushdb()
    clock = InstantClock()
    per = 60.0
    quota = RateLimits(users=Rate(claims, per=per), send_calls=None)
    shared = RedisLimiter(
        client, rate_limits=quota, app_key="org#cost", cold_start_wait=False, clock=clock
    )
    shared._script = client.register_script(_COUNTING)

    async def admit(step: float, units: int = 1, *, bulk: bool = False) -> None:
        permit = await shared.acquire(
            [("users", units)],
            min_units=1 if bulk else None,
            priority="bulk" if bulk else "interactive",
        )
        started = clock.now()
        permit.sending()
        clock.advance(0.002)
        permit.settle(ServerTiming(1.7e9 + started + 0.0015, 0.0005, sent=started))
        clock.advance(started + step - clock.now())

    for _ in range(claims + claims // 10):  # full, and turning over
        await admit((per + 0.01) / claims)
    await client.set("agora-chat:{org#cost}:seen:read", 0)
    calls = shared._round_trips
    for index in range(measured):
        if index == measured // 2:
            shared.penalize([("users", 1)])
        if index % 10 == 5:
            await admit(0.0, claims // 10, bulk=True)
        else:
            await admit(per / claims / 2)
    read = int(await client.get("agora-chat:{org#cost}:seen:read"))
    return {"read per call": read / (shared._round_trips - calls)}


async def test_a_call_reads_as_much_whatever_the_window_holds(redis_client):
    """The script's work per call does not grow with the claims in the window: what its
    commands return, 300 claims against 6,000, the documented users quota full (a scan of
    the log reads 20 times more)."""
    small = await _production_calls(redis_client, 300)
    large = await _production_calls(redis_client, 6000)
    assert large["read per call"] <= 1.25 * small["read per call"], (small, large)


async def test_a_user_without_evalsha_is_told_the_fix_at_once(redis_server):
    """A permanent failure (NOPERM under an ACL) is not retried: it names the grant."""
    admin = redis.asyncio.from_url(redis_server.url)
    await admin.execute_command(
        "ACL", "SETUSER", "chat", "on", ">pa55-word-0123", "~agora-chat:*", "+@all", "-evalsha"
    )
    url = f"redis://chat:pa55-word-0123@127.0.0.1:{redis_server.port}/0"
    user = redis.asyncio.from_url(url)
    shared = limiter(user, MockClock(), unavailable_timeout=30)
    with pytest.raises(LimiterStoreError) as raised:
        await shared.acquire([("users", 1)])
    message = str(raised.value)
    assert "evalsha" in message.lower()
    assert "~agora-chat:* and +evalsha +eval +script|load +hmget +time" in message
    assert "nothing was sent" in message
    assert "pa55-word" not in message
    assert shared._round_trips == 1  # not retried
    await user.aclose()
    await admin.aclose()


async def test_a_key_of_another_type_under_the_limiters_names_is_named(redis_client):
    await redis_client.flushdb()
    await redis_client.set("agora-chat:{org#app}:users:log", "someone else's")
    shared = limiter(redis_client, MockClock())
    with pytest.raises(LimiterStoreError, match=r"give RedisLimiter\(prefix=\.\.\.\)"):
        await shared.acquire([("users", 1)])


async def test_wrong_credentials_are_named_without_the_password(redis_server):
    admin = redis.asyncio.from_url(redis_server.url)
    await admin.execute_command("ACL", "SETUSER", "chat", "on", ">right-0123", "~*", "+@all")
    user = redis.asyncio.from_url(f"redis://chat:wrong-0123@127.0.0.1:{redis_server.port}/0")
    shared = limiter(user, MockClock())
    with pytest.raises(LimiterStoreError, match="check the user name and password") as raised:
        await shared.acquire([("users", 1)])
    assert "wrong-0123" not in str(raised.value)
    await user.aclose()
    await admin.aclose()


async def test_a_read_only_replica_is_waited_for_then_falls_back(redis_server):
    """After a failover the client may still talk to the old primary, now a replica:
    READONLY passes once it is promoted, so it is retried, then falls back like an
    unreachable Redis, never raised raw."""
    with RedisServer() as replica:
        client = redis.asyncio.from_url(replica.url)
        await client.execute_command("REPLICAOF", "127.0.0.1", str(redis_server.port))
        strict = limiter(client, MockClock(), unavailable_timeout=0.5)
        with pytest.raises(LimiterUnavailableError, match="ReadOnlyError"):
            await strict.acquire([("users", 1)])
        assert strict._round_trips > 1  # retried meanwhile
        falling = limiter(client, MockClock(), unavailable_timeout=0.5, fallback=0.5)
        permit = await falling.acquire([("users", 1)])  # through the in-memory fallback
        assert permit.units == 1
        await client.execute_command("REPLICAOF", "NO", "ONE")  # promoted
        assert (await strict.acquire([("users", 1)])).units == 1
        await client.aclose()


async def test_a_redis_asleep_past_the_timeout_is_retried_until_it_answers():
    """DEBUG SLEEP: every call times out while it sleeps, and is retried (transient)."""
    with RedisServer(options=["--enable-debug-command", "yes"]) as server:
        client = redis.asyncio.from_url(server.url, socket_timeout=0.1)
        sleeper = redis.asyncio.from_url(server.url)
        shared = limiter(client, None, unavailable_timeout=10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper.execute_command, "DEBUG", "SLEEP", "0.6")
            await anyio.sleep(0.05)
            permit = await shared.acquire([("users", 1)])
        assert permit.units == 1
        assert shared._round_trips > 1
        await client.aclose()
        await sleeper.aclose()


async def test_returning_from_the_fallback_hands_back_what_it_admitted(redis_server):
    """Ten units admitted in memory while Redis was down are counted in Redis when it is
    back: the next claim waits for them to leave, as it would have in memory."""
    client = redis.asyncio.from_url(redis_server.url)
    clock = MockClock()
    quota = RateLimits(users=Rate(10, per=1), margin=0, bulk_headroom=0.0)
    shared = limiter(client, clock, rate_limits=quota, fallback=1.0, unavailable_timeout=0.5)
    redis_server.stop()
    for _ in range(10):
        (await shared.acquire([("users", 1)])).settle()
    redis_server.start()  # back, empty (cold_start_wait=False: nothing else sent)
    clock.advance(0.6)  # past unavailable_timeout: the next admission tries Redis
    assert await waits(shared, clock, [("users", 1)]) == pytest.approx(1.0 - 0.6, abs=1e-3)
    assert await redis_server_keys(client) > 0
    await client.aclose()


async def redis_server_keys(client: Any) -> int:
    return len(await client.keys("agora-chat:*"))


async def test_the_limiter_and_the_progress_store_work_on_a_cluster(redis_cluster):
    """Every key of one app, and of one job, is in one hash slot: the script and the
    store's scripts run on the node that serves it, found by the cluster client."""
    client = redis.asyncio.RedisCluster.from_url(redis_cluster.url)
    try:
        clock = MockClock()
        shared = limiter(client, clock)
        assert await waits(shared, clock, [("users", 6), ("groups", 1)]) == 0
        assert await waits(shared, clock, [("users", 5)]) == pytest.approx(1.0, abs=1e-6)
        keys = [key async for key in client.scan_iter(match="agora-chat:*")]
        assert keys, "the limiter wrote nothing"
        slots = {await client.cluster_keyslot(key) for key in keys}
        assert slots == {await client.cluster_keyslot("{org#app}")}
        store = RedisProgressStore(client, worker="a")
        await store.acquire("welcome")
        progress = JobProgress(count=1, sha256="x")
        progress.done.add(0)
        await store.save("welcome", progress)
        assert (await store.load("welcome")).finished  # type: ignore[union-attr]
        await store.delete("welcome")
        assert await store.load("welcome") is None
    finally:
        await client.aclose()
