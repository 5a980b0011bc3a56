"""The window rules: the pure model, its one copy of the constants, and the two runtimes
(in memory, and the Lua script on a real redis-server) deciding alike."""

from __future__ import annotations

import asyncio
import math
from importlib import resources
from typing import Any

import anyio
import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agora_chat_async
from agora_chat_async import (
    Permit,
    Priority,
    Rate,
    RateLimits,
    RedisLimiter,
    ServerTiming,
    SlidingWindowLimiter,
)
from agora_chat_async._redis_script import SCRIPT as _SCRIPT
from agora_chat_async._window_rules import (
    DECREASE_FACTOR,
    ESTIMATE_HEADROOM,
    HELD_POLL,
    HOLD_WINDOWS,
    MIN_EXTRA_MARGIN,
    PROBE_PER_WINDOW,
    UNANSWERED_HOLD,
    Adaptation,
    ClockCheck,
    DelayFloor,
    after_refusal,
    answered,
    effective_limit,
    floor_value,
    kept_for_a_floor,
    lua_constants,
    moved_anchor,
    observe_floor,
    replaced_anchor,
    settled_anchor,
)
from agora_chat_async.testing import MockClock

TICK = 1 / 64  # clock steps exact in binary floating point and in whole microseconds
LIMITS = RateLimits(
    users=Rate(20, per=1), groups=Rate(3, per=1), rooms=Rate(5, per=1), other=Rate(5, per=1),
    send_calls=None, margin=2 * TICK, bulk_headroom=0.1,
)  # fmt: skip


async def limiter_in(
    runtime: str,
    request: pytest.FixtureRequest,
    clock: MockClock,
    *,
    margin: float = 0.0,
) -> tuple[SlidingWindowLimiter | RedisLimiter, Any]:
    """20 users a second, no headroom, in *runtime* ("memory" or "redis" on the session's
    redis-server), on *clock*; and its Redis client (``None`` in memory)."""
    limits = RateLimits(users=Rate(20, per=1), margin=margin, bulk_headroom=0.0)
    if runtime == "memory":
        return SlidingWindowLimiter(limits, clock=clock), None
    client = redis.asyncio.from_url(request.getfixturevalue("redis_server").url)
    await client.flushdb()
    limiter = RedisLimiter(
        client, rate_limits=limits, app_key="org#app", cold_start_wait=False, clock=clock
    )
    return limiter, client


def test_the_script_has_no_constants_of_its_own():
    lua = resources.files(agora_chat_async).joinpath("_redis_limiter.lua").read_text("utf-8")
    for line in lua_constants().splitlines():
        name = line.split()[1]
        assert f"local {name} =" not in lua  # only in the prelude made from _window_rules
        assert _SCRIPT.count(f"local {name} =") == 1


def test_a_late_answer_moves_the_anchor_an_early_one_does_not():
    assert settled_anchor(10.0, 10.01, margin=0.02) is None
    assert settled_anchor(10.0, 10.011, margin=0.02) == 10.011


def test_with_the_services_clock_only_the_uncertain_part_is_charged():
    # Forward offset 0.055 (a forward delay 5 ms above the floor of 0.05), 1 ms of work,
    # 2 ms of resolution: charged 8 ms of a 110 ms round trip.
    anchor = settled_anchor(10.0, 10.11, 0.02, offset=0.055, duration=0.001, floor=0.05)
    assert anchor == pytest.approx(10.008)
    moved = settled_anchor(10.0, 10.2, 0.02, offset=0.08, duration=0.001, floor=0.05)
    assert moved == pytest.approx(10.033)
    # No floor yet, or an absurd offset: never more than the round trip.
    assert settled_anchor(10.0, 10.2, 0.02, offset=0.08) == 10.2
    assert settled_anchor(10.0, 10.2, 0.02, offset=1e9, floor=0.05) == pytest.approx(10.2)
    assert settled_anchor(10.0, 10.2, 0.02, offset=-1e9, floor=0.05) is None


def test_the_floor_keeps_the_smallest_offset_of_the_last_two_buckets():
    floor = DelayFloor()
    assert floor_value(floor, 0.0, 20.0) == math.inf
    floor = observe_floor(floor, 0.05, 1.0, 20.0)
    floor = observe_floor(floor, 0.07, 2.0, 20.0)
    assert floor_value(floor, 2.0, 20.0) == 0.05
    floor = observe_floor(floor, 0.09, 25.0, 20.0)  # a new bucket; the old one is kept
    assert floor_value(floor, 25.0, 20.0) == 0.05
    floor = observe_floor(floor, 0.08, 50.0, 20.0)  # the 0.05 bucket ages out
    assert floor_value(floor, 50.0, 20.0) == 0.08
    assert floor_value(floor, 200.0, 20.0) == math.inf  # nothing lately


def test_a_full_window_refused_is_jitter_and_widens_the_window():
    state = Adaptation(base=20.0)
    state = after_refusal(state, 20, 1.0, at=5.0, units=5, accepted=15, recent=0)
    assert (state.base, state.extra_margin) == (20.0, MIN_EXTRA_MARGIN)
    state = after_refusal(state, 20, 1.0, at=5.5, units=5, accepted=15, recent=0)
    assert state.extra_margin == 2 * MIN_EXTRA_MARGIN


def test_a_refusal_below_the_limit_takes_what_was_accepted_then_holds_and_probes():
    state = after_refusal(Adaptation(base=20.0), 20, 1.0, at=5.0, units=2, accepted=12, recent=0)
    assert state.base == pytest.approx(ESTIMATE_HEADROOM * 12)
    assert state.hold_until == 5.0 + HOLD_WINDOWS
    assert effective_limit(state, 20, 1.0, 5.0 + HOLD_WINDOWS) == state.base
    one_window_later = effective_limit(state, 20, 1.0, 6.0 + HOLD_WINDOWS)
    assert one_window_later == pytest.approx(state.base + PROBE_PER_WINDOW * 20)
    assert effective_limit(state, 20, 1.0, 1000.0) == 20
    # A refusal while probing doubles the hold.
    probing = after_refusal(state, 20, 1.0, at=6.0 + HOLD_WINDOWS, units=1, accepted=3, recent=0)
    assert probing.hold_windows == 2 * HOLD_WINDOWS


def test_an_early_refusal_cuts_once_a_window_and_never_below_the_floor():
    state = after_refusal(Adaptation(base=20.0), 20, 1.0, at=5.0, units=1, accepted=2, recent=0)
    assert state.base == pytest.approx(20 * DECREASE_FACTOR)
    again = after_refusal(state, 20, 1.0, at=5.5, units=1, accepted=2, recent=0)
    assert again.base == state.base  # the same window: no second cut
    for step in range(30):
        state = after_refusal(state, 20, 1.0, at=7.0 + step, units=1, accepted=0, recent=0)
    assert state.base == 2.0  # 10% of 20


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(1, 8), st.booleans(), st.booleans()),
        st.tuples(st.just("acquire"), st.integers(1, 20), st.booleans(), st.booleans()),
        st.tuples(st.just("advance"), st.integers(1, 80)),
        st.tuples(st.just("settle"), st.integers(0, 1000), st.integers(0, 40)),
        # Answered after ticks, with the service's timestamp: counted forward ticks after
        # the start, done in duration ticks, on a new connection or not.
        st.tuples(
            st.just("answer"),
            st.integers(0, 1000),
            st.integers(0, 40),
            st.integers(0, 40),
            st.integers(0, 4),
            st.booleans(),
            st.integers(0, 8),
        ),
        # Warm answers a few ticks apart: floors that drop under claims in the window.
        st.tuples(
            st.just("answer"),
            st.integers(0, 1000),
            st.integers(4, 12),
            st.integers(0, 12),
            st.integers(0, 1),
            st.just(False),
            st.integers(0, 3),
        ),
        st.tuples(st.just("refuse"), st.integers(0, 1000)),
        st.tuples(st.just("refund"), st.integers(0, 1000)),
        # The request leaves: its claims stay until answered, even past their window.
        st.tuples(st.just("send"), st.integers(0, 1000)),
    ),
    min_size=1,
    max_size=60,
)


#: The script as shipped; with every search of the log a binary search over its ranks
#: (``reach`` reads no claim one by one); and moving one claim that left the window out of
#: the log a call (the others stay, out of every window): all must decide as memory does.
VARIANTS = {
    "shipped": _SCRIPT,
    "binary search": _SCRIPT.replace("local CHUNK = 16", "local CHUNK = 0"),
    "one stale claim a call": _SCRIPT.replace("local STALE = 16", "local STALE = 1"),
}


def test_each_variant_differs_from_the_shipped_script():
    assert len({*VARIANTS.values()}) == len(VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_both_runtimes_decide_alike(redis_server, variant, operations):
    """The same admissions, answers, refusals and clock steps, in memory and in Redis:
    the same waits, the same units granted, the same effective limits."""

    async def scenario() -> None:
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()
        memory_clock, redis_clock = MockClock(), MockClock()
        memory = SlidingWindowLimiter(LIMITS, clock=memory_clock)
        shared = RedisLimiter(
            client, rate_limits=LIMITS, app_key="org#app", cold_start_wait=False, clock=redis_clock
        )
        shared._script = client.register_script(VARIANTS[variant])
        permits: list[tuple[Permit, Permit, int, float]] = []
        for step, operation in enumerate(operations):
            kind = operation[0]
            if kind == "acquire":
                _, units, shrink, bulk = operation
                min_units = 1 if shrink else None
                priority: Priority = "bulk" if bulk else "interactive"
                one = await memory.acquire(
                    [("users", units)], min_units=min_units, priority=priority
                )
                two = await shared.acquire(
                    [("users", units)], min_units=min_units, priority=priority
                )
                assert one.units == two.units, (step, operation)
                permits.append((one, two, one.units, memory_clock.now()))
            elif kind == "advance":
                memory_clock.advance(operation[1] * TICK)
                redis_clock.advance(operation[1] * TICK)
            elif permits:
                one, two, units, started = permits[operation[1] % len(permits)]
                if kind == "settle":  # answered operation[2] ticks after now
                    memory_clock.advance(operation[2] * TICK)
                    redis_clock.advance(operation[2] * TICK)
                    one.settle()
                    two.settle()
                elif kind == "send":
                    one.sending()
                    two.sending()
                elif kind == "answer":
                    _, _, ticks, forward, duration, new, left = operation
                    memory_clock.advance(ticks * TICK)
                    redis_clock.advance(ticks * TICK)
                    # The service's clock runs 1000 s ahead of ours, and answers before the
                    # answer comes back (a truthful clock); the bytes left *left* ticks
                    # after the start (at most when it was counted).
                    forward = min(forward, ticks)
                    duration = min(duration, ticks - forward)
                    counted = started + 1000 + forward * TICK
                    sent = started + min(left, forward) * TICK
                    timing = ServerTiming(counted + duration * TICK, duration * TICK, new, sent)
                    one.settle(timing)
                    two.settle(timing)
                elif kind == "refuse":  # what the transport does with a 429
                    one.refund()
                    two.refund()
                    memory.penalize([("users", units)])
                    shared.penalize([("users", units)])
                else:
                    one.refund()
                    two.refund()
            assert redis_clock.now() == pytest.approx(memory_clock.now(), abs=1e-5), (step, kind)
            redis_clock._now = memory_clock.now()  # no drift of float against microseconds
            expected = await memory.effective_limit("users")
            assert expected is not None
            got = await shared.effective_limit("users")
            assert got == pytest.approx(expected, rel=1e-9), (step, operation)
            assert math.floor(got or 0) == math.floor(expected), (step, operation)
        await client.aclose()

    asyncio.run(scenario())


def test_the_differential_test_can_fail(redis_server):
    """A Lua copy of a constant drifting from the model is caught."""
    drifted = lua_constants().replace(
        f"ESTIMATE_HEADROOM = {ESTIMATE_HEADROOM!r}", "ESTIMATE_HEADROOM = 0.9"
    )
    script = _SCRIPT.replace(lua_constants(), drifted)

    async def scenario() -> Any:
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()
        clock = MockClock()
        shared = RedisLimiter(
            client, rate_limits=LIMITS, app_key="org#app", cold_start_wait=False, clock=clock
        )
        shared._script = client.register_script(script)
        for _ in range(12):
            await shared.acquire([("users", 1)])
        shared.penalize([("users", 1)])
        got = await shared.effective_limit("users")
        await client.aclose()
        return got

    got = asyncio.run(scenario())
    assert got == pytest.approx(0.9 * 12)
    assert got != pytest.approx(ESTIMATE_HEADROOM * 12)


def test_a_floor_that_drops_moves_the_claims_charged_against_a_higher_one():
    # Charged against a floor of 0.06: anchored 2 ms (the resolution) after its start.
    first = answered(
        DelayFloor(), ClockCheck(), started=0.0, done=0.1, at=0.1, margin=0.02,
        bucket=20.0, offset=0.06, duration=0.0, warm=True,
    )  # fmt: skip
    assert first.anchor == pytest.approx(0.002)
    assert first.key == pytest.approx(0.062)
    assert first.replace == pytest.approx(0.06)  # the first floor: moves floorless claims
    assert not first.floorless
    # A faster answer: the floor drops to 0.01, and says so.
    second = answered(
        first.floor, first.check, started=0.1, done=0.2, at=0.2, margin=0.02,
        bucket=20.0, offset=0.01, duration=0.0, warm=True,
    )  # fmt: skip
    assert second.replace == pytest.approx(0.01)
    assert replaced_anchor(first.key, second.replace, 0.0, 0.1) == pytest.approx(0.052)
    # Never after the answer, never before the start; a contradicted clock: the answer.
    assert replaced_anchor(first.key, -1.0, 0.0, 0.1) == 0.1
    assert replaced_anchor(first.key, 1.0, 0.0, 0.1) == 0.0
    assert replaced_anchor(first.key, -math.inf, 0.0, 0.1) == 0.1


def test_the_first_floor_moves_the_claims_charged_the_whole_round_trip_earlier():
    # The first request of a connection: no floor yet, so the whole round trip is
    # charged (anchored at its answer), but its key says when the service had it.
    cold = answered(
        DelayFloor(), ClockCheck(), started=0.0, done=0.3, at=0.3, margin=0.005,
        bucket=20.0, offset=0.25, duration=0.0, warm=False,
    )  # fmt: skip
    assert cold.anchor == 0.3
    assert cold.floorless
    assert cold.key == pytest.approx(0.252)
    assert cold.replace is None
    # A warm answer brings the first floor, 0.1: the cold claim belongs at 0.152, where
    # it would have been charged had the floor been known at its answer.
    warm = answered(
        cold.floor, cold.check, started=0.3, done=0.5, at=0.5, margin=0.005,
        bucket=20.0, offset=0.1, duration=0.0, warm=True,
    )  # fmt: skip
    assert warm.replace == pytest.approx(0.1)
    assert not warm.floorless
    moved = moved_anchor(0.3, cold.key, warm.replace, 0.0, 0.3, floorless=True)
    assert moved == pytest.approx(0.152)
    # Claims charged against a floor never move earlier; nor after a contradicted clock.
    assert moved_anchor(0.3, cold.key, warm.replace, 0.0, 0.3, floorless=False) == 0.3
    assert moved_anchor(0.3, cold.key, -math.inf, 0.0, 0.3, floorless=True) == 0.3
    # The first floor may come from one answer: the cold claims are placed against it
    # less the spread of the cold answers' offsets (here 30 ms), never before their start.
    spread = moved_anchor(0.3, cold.key, warm.replace, 0.0, 0.3, floorless=True, spread=0.03)
    assert spread == pytest.approx(moved + 0.03)
    assert moved_anchor(0.3, cold.key, 0.1, 0.0, 0.3, floorless=True, spread=1.0) == 0.3


def test_a_window_keeps_one_unit_for_the_first_floor_only_while_it_may_come():
    cold = {"floored": False, "answered_ago": math.inf, "span": 1.0}
    assert kept_for_a_floor(20, 3, **cold) == 1
    assert kept_for_a_floor(20, 0, **cold) == 0  # nothing on its way: no answer to wait for
    assert kept_for_a_floor(1, 3, **cold) == 0  # a limit of one keeps nothing
    assert kept_for_a_floor(20, 3, **{**cold, "floored": True}) == 0
    assert kept_for_a_floor(20, 3, **{**cold, "answered_ago": 0.5}) == 0  # an answer came
    assert kept_for_a_floor(20, 3, **{**cold, "answered_ago": 1.0}) == 1


@pytest.mark.parametrize("runtime", ["memory", "redis"])
@pytest.mark.parametrize(
    ("sent", "answered_at", "admitted_at"),
    [
        # No answer ever: the 20th waits as long as the unanswered claims are held.
        (True, None, 1.0 + UNANSWERED_HOLD),
        (True, 0.25, 0.25),  # an answer came: it starts then
        (False, None, 0.0),  # nothing on its way: nothing kept
    ],
)
def test_a_cold_window_keeps_its_last_unit_until_an_answer_comes(
    runtime, sent, answered_at, admitted_at, request
):
    """19 of 20 units on their way and no floor yet: the 20th waits for the first answer
    (it goes on the connection that answered, and brings the first floor)."""

    async def scenario() -> float:
        clock = MockClock(start=0.0)
        limiter, client = await limiter_in(runtime, request, clock)
        first = await limiter.acquire([("users", 19)])
        if sent:
            first.sending()
        if answered_at is not None:
            clock.advance(answered_at)
            first.settle(ServerTiming(1000.2, 0.0, new_connection=True))
        await limiter.acquire([("users", 1)])
        if client is not None:
            await client.aclose()
        return clock.now()

    assert asyncio.run(scenario()) == pytest.approx(admitted_at, abs=1e-6)


def test_a_waiter_for_the_kept_unit_starts_within_a_poll_of_the_answer():
    async def scenario() -> float:
        clock = MockClock(start=0.0)
        limiter = SlidingWindowLimiter(RateLimits(users=Rate(20, per=1), margin=0), clock=clock)
        first = await limiter.acquire([("users", 19)])
        first.sending()
        admitted: list[float] = []

        async def last() -> None:
            await limiter.acquire([("users", 1)])
            admitted.append(clock.now())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(last)
            await clock.sleep(0.25)
            first.settle(ServerTiming(1000.2, 0.0, new_connection=True))
        return admitted[0]

    assert 0.25 <= asyncio.run(scenario()) <= 0.25 + HELD_POLL + 1e-9


@pytest.mark.parametrize("runtime", ["memory", "redis"])
@pytest.mark.parametrize(
    ("floor_at", "need", "left_at"),
    [(0.5, 10, 1.152), (1.2, 18, 1.2)],  # moved within its window; moved out of it
)
def test_claims_charged_for_want_of_a_floor_leave_earlier_once_one_comes(
    runtime, request, floor_at, need, left_at
):
    """A window filled by first requests of their connections (no floor: charged their
    whole round trip, 300 ms), then a warm answer brings a floor: they leave the window
    as if it had been known at their answers (at 1.152 s, not 1.3 s), or at once if that
    has passed."""

    async def scenario() -> float:
        clock = MockClock(start=0.0)
        limiter, client = await limiter_in(runtime, request, clock)
        cold = [await limiter.acquire([("users", 9)]) for _ in range(2)]
        for permit in cold:
            permit.sending()
        clock.advance(0.3)
        for permit in cold:  # counted 0.25 s after their start, on a new connection each
            permit.settle(ServerTiming(1000.25, 0.0, new_connection=True))
        warm = await limiter.acquire([("users", 2)])
        warm.sending()
        clock.advance(floor_at - 0.3)
        warm.settle(ServerTiming(1000.4, 0.0))  # forward offset 1000.1: the first floor
        await limiter.flush()
        await limiter.acquire([("users", need)])
        if client is not None:
            await client.aclose()
        return clock.now()

    # The cold claims leave at key - floor + per = 1000.252 - 1000.1 + 1 = 1.152 (without
    # the move: at their answer plus per, 1.3).
    assert asyncio.run(scenario()) == pytest.approx(left_at, abs=1e-5)


def test_the_floor_is_sampled_from_when_the_bytes_left():
    # Its start was 80 ms before its bytes left (a busy event loop): the floor is the
    # forward offset from when they left, so it is not inflated by the client's delay.
    answer = answered(
        DelayFloor(), ClockCheck(), started=0.0, done=0.2, at=0.2, margin=0.02,
        bucket=20.0, offset=0.14, duration=0.0, warm=True, sent_offset=0.06,
    )  # fmt: skip
    assert floor_value(answer.floor, 0.2, 20.0) == pytest.approx(0.06)
    # ... and the claim is charged the 80 ms it may have been counted later.
    assert answer.anchor == pytest.approx(0.082)


@pytest.mark.parametrize("runtime", ["memory", "redis"])
def test_claims_charged_against_a_floor_that_drops_leave_later(runtime, request):
    """Two claims charged against a floor of 60 ms fill the window; a faster answer lowers
    the floor by 50 ms, and they leave the window 50 ms later than they would have."""

    async def scenario() -> float:
        clock = MockClock(start=0.0)
        limiter, client = await limiter_in(runtime, request, clock)
        one = await limiter.acquire([("users", 10)])
        two = await limiter.acquire([("users", 9)])
        probe = await limiter.acquire([("users", 1)])
        for permit in (one, two, probe):
            permit.sending()
        clock.advance(0.125)
        one.settle(ServerTiming(1000.0625, 0.0))  # forward offset 1000.0625: the floor
        two.settle(ServerTiming(1000.0625, 0.0))
        clock.advance(0.125)
        probe.settle(ServerTiming(1000.0, 0.0))  # started with them, counted 62.5 ms sooner
        await limiter.flush()
        before = clock.now()
        await limiter.acquire([("users", 10)])
        if client is not None:
            await client.aclose()
        return clock.now() - before

    waited = asyncio.run(scenario())
    # `one` leaves at key - floor + per = 1000.0645 - 1000.0 + 1 = 1.0645 (without the
    # drop: at its start plus the resolution, 1.002), 0.25 s after the clock's start.
    assert waited == pytest.approx(1.0645 - 0.25, abs=1e-5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    answers=st.lists(
        st.tuples(
            st.integers(1, 6),  # units
            st.integers(0, 12),  # ticks to the answer
            st.integers(0, 12),  # forward ticks
            st.integers(0, 2),  # duration ticks
            st.integers(0, 4),  # ticks before the bytes left
            st.booleans(),  # on a new connection
        ),
        min_size=2,
        max_size=12,
    ),
    then=st.lists(st.integers(1, 20), min_size=1, max_size=4),
)
def test_both_runtimes_move_claims_alike_when_the_floor_drops(redis_server, answers, then):
    """Claims admitted one after another, answered with floors that rise and drop, then
    more claims: both runtimes make them wait alike (the moves of a dropping floor)."""

    async def scenario() -> None:
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()
        clocks = MockClock(), MockClock()
        limiters = (
            SlidingWindowLimiter(LIMITS, clock=clocks[0]),
            RedisLimiter(
                client, rate_limits=LIMITS, app_key="org#app", cold_start_wait=False,
                clock=clocks[1],
            ),
        )  # fmt: skip
        for units, ticks, forward_ticks, duration_ticks, left, new in answers:
            permits = [await limiter.acquire([("users", units)]) for limiter in limiters]
            started = clocks[0].now()
            for clock in clocks:
                clock.advance(ticks * TICK)
            forward = min(forward_ticks, ticks)
            duration = min(duration_ticks, ticks - forward)
            counted = started + 1000 + forward * TICK
            sent = started + min(left, forward) * TICK
            timing = ServerTiming(counted + duration * TICK, duration * TICK, new, sent)
            for permit in permits:
                permit.sending()
                permit.settle(timing)
            await limiters[1].flush()
            clocks[1]._now = clocks[0].now()
        for units in then:
            for limiter in limiters:
                await limiter.acquire([("users", units)])
            assert clocks[1].now() == pytest.approx(clocks[0].now(), abs=1e-5)
            clocks[1]._now = clocks[0].now()
        await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("runtime", ["memory", "redis"])
@pytest.mark.parametrize(
    ("second_at", "granted", "at"),
    [(0.02, 3, 1.02), (0.05, 1, 1.0)],  # all of it 20 ms later: waits; 50 ms: shrinks
)
def test_a_claim_that_may_shrink_waits_for_all_of_it_when_that_comes_soon(
    runtime, request, second_at, granted, at
):
    """One unit leaves at 1 s and 19 more at 1 + *second_at*: a 3-unit claim that may
    shrink to 1 waits for all three if they fit within SHRINK_WAIT (31.25 ms) of per."""

    async def scenario() -> tuple[int, float]:
        clock = MockClock(start=0.0)
        limiter, client = await limiter_in(runtime, request, clock)
        await limiter.acquire([("users", 1)])
        clock.advance(second_at)
        await limiter.acquire([("users", 19)])
        clock.advance(0.5)
        permit = await limiter.acquire([("users", 3)], min_units=1)
        if client is not None:
            await client.aclose()
        return permit.units, clock.now()

    units, when = asyncio.run(scenario())
    assert units == granted
    assert when == pytest.approx(at, abs=1e-5)


async def _first_queued_start(runtime: str, request: pytest.FixtureRequest) -> float:
    """Four claims fill the window at 0 and eight more queue behind them, two windows'
    worth (the script reserves them at 1.004 and 2.008; memory queues them). The first
    four are answered 3 ms after their start, over the margin's half, so their anchors move
    to their answers and they leave at 1.007. When does the first queued claim start?
    (The clock is moved by hand, a hundredth at a time from 1.0045; the queued tasks' Redis
    calls are given real time to finish between steps.)"""
    clock = MockClock(start=0.0, autojump=False)
    limiter, client = await limiter_in(runtime, request, clock, margin=0.004)
    first = [await limiter.acquire([("users", 5)]) for _ in range(4)]
    started: list[float] = []

    async def queued() -> None:
        permit = await limiter.acquire([("users", 5)])
        started.append(clock.now())
        permit.refund()

    async def settle_io() -> None:
        for _ in range(20):
            await anyio.sleep(0.005)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(queued)
                await settle_io()
            for permit in first:
                permit.sending()
            clock.advance(0.003)
            for permit in first:
                permit.settle()
            await limiter.flush()
            clock.advance(1.0045 - clock.now())
            await settle_io()
            while not started and clock.now() < 1.1:
                clock.advance(0.01)
                await settle_io()
            tg.cancel_scope.cancel()
    if client is not None:
        await client.aclose()
    return started[0] if started else math.inf


def test_a_queued_claim_starts_when_the_moved_anchors_leave_in_memory(request):
    assert asyncio.run(_first_queued_start("memory", request)) == pytest.approx(1.0145)


def test_a_queued_claim_starts_when_the_moved_anchors_leave_in_redis(request):
    assert asyncio.run(_first_queued_start("redis", request)) == pytest.approx(1.0145)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_claims_that_left_the_window_count_for_nothing_before_they_are_moved(redis_server, variant):
    """Twenty single claims, half interactive, half bulk, leave the window at once (half of
    them answered after that); the script moves at most STALE of them out of the log a call
    (one, in a variant), and the rest count for nothing meanwhile: every kind of claim
    decides as in memory, call after call, until the log holds only what is in the window."""

    async def decisions(runtime: str) -> list[tuple[int, float]]:
        clock = MockClock(start=0.0)
        limits = RateLimits(users=Rate(20, per=1), margin=2 * TICK, bulk_headroom=0.1)
        limiter: SlidingWindowLimiter | RedisLimiter = SlidingWindowLimiter(limits, clock=clock)
        client = None
        if runtime == "redis":
            client = redis.asyncio.from_url(redis_server.url)
            await client.flushdb()
            limiter = RedisLimiter(
                client, rate_limits=limits, app_key="org#app", cold_start_wait=False, clock=clock
            )
            limiter._script = client.register_script(VARIANTS[variant])
        permits = []
        for index in range(20):
            priority: Priority = "bulk" if index % 2 else "interactive"
            permits.append(await limiter.acquire([("users", 1)], priority=priority))
            clock.advance(TICK / 4)
        clock.advance(2.0)  # every one of them left the window
        for permit in permits[:10]:
            permit.settle()  # answered now, after it left: it stays out
        got = []
        for units, priority, shrink in [
            (10, "bulk", False),  # at once
            (5, "interactive", False),  # beside them, at once
            (10, "bulk", True),  # 3 fit (bulk leaves 2 of 20): it waits for all of it
            (20, "interactive", False),
            (1, "bulk", False),
        ] * 2:
            start = clock.now()
            permit = await limiter.acquire(
                [("users", units)], priority=priority, min_units=1 if shrink else None
            )
            got.append((permit.units, round(clock.now() - start, 6)))
        if client is not None:
            if "local STALE = 16" in VARIANTS[variant]:  # ten calls moved all twenty
                edge = round((clock.now() - 1 - 2 * TICK) * 1_000_000)
                assert await client.zcount("agora-chat:{org#app}:users:log", "-inf", edge) == 0
            await client.aclose()
        return got

    memory = asyncio.run(decisions("memory"))
    assert asyncio.run(decisions("redis")) == memory
    assert memory[:2] == [(10, 0.0), (5, 0.0)]
