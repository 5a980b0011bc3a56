"""The sliding-window limiter, exactly, on a virtual clock."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora_chat_async import (
    DEFAULT_RATE_LIMITS,
    Claim,
    Priority,
    Rate,
    RateLimits,
    SlidingWindowLimiter,
    ValidationError,
)

from .clocks import InstantClock, SteppedClock
from .conftest import VirtualClock
from .scenarios import Start, admit_all, arrivals, most_in_any_window, saturate


def test_defaults_are_the_documented_quotas():
    assert DEFAULT_RATE_LIMITS.users == Rate(6000, per=60)
    assert DEFAULT_RATE_LIMITS.groups == Rate(20, per=1)
    assert DEFAULT_RATE_LIMITS.rooms == Rate(100, per=1)
    assert DEFAULT_RATE_LIMITS.other == Rate(100, per=1)


@pytest.mark.parametrize(("limit", "per"), [(0, 1), (-1, 1), (1, 0), (1, -2), (1.5, 1), (True, 1)])
def test_rate_rejects_nonsense_at_construction(limit, per):
    with pytest.raises(ValidationError):
        Rate(limit, per=per)


async def test_units_within_the_limit_start_at_once(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(users=Rate(10, per=60), margin=0), clock=clock)
    for _ in range(10):
        await limiter.acquire([("users", 1)])
    assert clock.sleeps == []


async def test_the_next_unit_waits_for_the_window_to_slide(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(groups=Rate(20, per=1), margin=0), clock=clock)
    start = clock.now()
    for _ in range(6):
        await limiter.acquire([("groups", 3)])  # 18 units
    await limiter.acquire([("groups", 2)])  # 20: still now
    assert clock.now() == start
    await limiter.acquire([("groups", 3)])  # needs the first 3 to leave the window
    assert clock.now() == start + 1.0


async def test_waits_only_as_long_as_the_oldest_units_need(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(users=Rate(600, per=60), margin=0), clock=clock)
    t0 = clock.now()
    await limiter.acquire([("users", 200)])
    clock.advance(10)
    await limiter.acquire([("users", 200)])
    clock.advance(10)
    await limiter.acquire([("users", 200)])
    # 600 used; 300 more need the first two entries (400 units) to expire: t0 + 70.
    await limiter.acquire([("users", 300)])
    assert clock.now() == t0 + 70


async def test_a_shrinkable_claim_takes_what_fits_now(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(groups=Rate(20, per=1), margin=0), clock=clock)
    for _ in range(6):
        await limiter.acquire([("groups", 3)])  # 18 units
    permit = await limiter.acquire([("groups", 3), ("send_calls", 1)], min_units=1)
    assert (permit.units, clock.sleeps) == (2, [])  # the 2 units left, now
    # Nothing fits now: the claim waits for at least min_units, then takes what fits.
    permit = await limiter.acquire([("groups", 3)], min_units=2)
    assert (permit.units, clock.sleeps) == (3, [1.0])
    assert (await limiter.acquire([("groups", 3)])).units == 3  # whole claims stay whole


@pytest.mark.parametrize("min_units", [0, 4, -1])
async def test_min_units_must_be_within_the_first_claim(clock: VirtualClock, min_units: int):
    limiter = SlidingWindowLimiter(clock=clock)
    with pytest.raises(ValidationError, match="min_units"):
        await limiter.acquire([("groups", 3)], min_units=min_units)


async def test_limits_are_independent(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(groups=Rate(1, per=1), margin=0), clock=clock)
    await limiter.acquire([("groups", 1)])
    await limiter.acquire([("rooms", 100)])
    await limiter.acquire([("other", 100)])
    assert clock.sleeps == []


@pytest.mark.parametrize("units", [0, -1, 21])
async def test_impossible_requests_are_refused_at_once(clock: VirtualClock, units: int):
    limiter = SlidingWindowLimiter(clock=clock)
    with pytest.raises(ValidationError, match="units"):
        await limiter.acquire([("groups", units)])


async def test_admission_is_first_come_first_served(clock: VirtualClock):
    """A big batch queued first is not overtaken by small sends queued after it."""
    limiter = SlidingWindowLimiter(RateLimits(users=Rate(600, per=60), margin=0), clock=clock)
    await limiter.acquire([("users", 500)])
    admitted: list[str] = []

    async def take(name: str, units: int) -> None:
        await limiter.acquire([("users", units)])
        admitted.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "big", 600)
        await anyio.lowlevel.checkpoint()
        for index in range(5):
            tg.start_soon(take, f"small{index}", 1)
            await anyio.lowlevel.checkpoint()
    assert admitted == ["big", "small0", "small1", "small2", "small3", "small4"]


async def test_cancelled_waiter_leaks_no_capacity():
    class BlockingClock(InstantClock):
        """Sleeps never end by themselves; signals when a waiter starts sleeping."""

        def __init__(self) -> None:
            super().__init__()
            self.sleeping = anyio.Event()

        async def sleep(self, seconds: float) -> None:
            self.sleeping.set()
            await anyio.sleep_forever()

    clock = BlockingClock()
    limiter = SlidingWindowLimiter(RateLimits(other=Rate(2, per=1), margin=0), clock=clock)
    await limiter.acquire([("other", 2)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire, [("other", 1)])
        await clock.sleeping.wait()
        tg.cancel_scope.cancel()
    clock.advance(1.0)
    # Had the cancelled waiter recorded its unit, only 1 would fit now, and this would sleep.
    clock.sleeping = anyio.Event()
    await limiter.acquire([("other", 2)])
    assert not clock.sleeping.is_set()


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 50),
    per=st.sampled_from([0.5, 1.0, 60.0]),
    arrivals=st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.integers(1, 50)), max_size=40),
    shrink=st.booleans(),
)
def test_no_window_ever_holds_more_than_the_limit(limit, per, arrivals, shrink):
    """For any arrival pattern, no interval of length `per` holds more than `limit` units,
    whether claims are whole or may shrink to what fits."""

    async def scenario() -> list[tuple[float, int]]:
        clock = VirtualClock(start=0.0)
        limiter = SlidingWindowLimiter(
            RateLimits(other=Rate(limit, per=per), margin=0), clock=clock
        )
        started: list[tuple[float, int]] = []
        for gap, wanted in arrivals:
            clock.advance(gap)
            units = min(wanted, limit)
            permit = await limiter.acquire(
                [("other", units)], min_units=max(1, units // 2) if shrink else None
            )
            assert max(1, units // 2) <= permit.units <= units if shrink else permit.units == units
            started.append((clock.now(), permit.units))
        return started

    started = anyio.run(scenario)
    for index, (begin, _) in enumerate(started):
        in_window = sum(u for t, u in started[index:] if t < begin + per)
        assert in_window <= limit


async def test_a_request_waits_until_all_its_claims_fit(clock: VirtualClock):
    limiter = SlidingWindowLimiter(
        RateLimits(users=Rate(600, per=60), send_calls=Rate(2, per=1), margin=0), clock=clock
    )
    start = clock.now()
    await limiter.acquire([("users", 1), ("send_calls", 1)])
    await limiter.acquire([("users", 1), ("send_calls", 1)])
    await limiter.acquire([("users", 1), ("send_calls", 1)])  # the call rate binds: 2 a second
    assert clock.now() == start + 1.0


async def test_a_long_wait_for_recipients_does_not_block_the_shared_call_rate(
    clock: VirtualClock,
):
    class Gate(InstantClock):
        """Lets the test decide when a sleeping waiter wakes."""

        def __init__(self) -> None:
            super().__init__()
            self.sleeping = anyio.Event()
            self.wake = anyio.Event()

        async def sleep(self, seconds: float) -> None:
            self.sleeping.set()
            await self.wake.wait()
            self.advance(seconds)

    gate = Gate()
    limiter = SlidingWindowLimiter(RateLimits(users=Rate(1, per=60), margin=0), clock=gate)
    await limiter.acquire([("users", 1), ("send_calls", 1)])
    order: list[str] = []

    async def user_send() -> None:
        await limiter.acquire([("users", 1), ("send_calls", 1)])  # waits a minute
        order.append("user")

    async def group_send() -> None:
        await limiter.acquire([("groups", 3), ("send_calls", 1)])
        order.append("group")

    async with anyio.create_task_group() as tg:
        tg.start_soon(user_send)
        await gate.sleeping.wait()
        await group_send()  # not blocked by the user send waiting on its recipient quota
        gate.wake.set()
    assert order == ["group", "user"]


async def test_the_margin_widens_every_window(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(groups=Rate(20, per=1), margin=0.05), clock=clock)
    start = clock.now()
    await limiter.acquire([("groups", 20)])
    await limiter.acquire([("groups", 1)])
    assert clock.now() == pytest.approx(start + 1.05)


async def test_a_refunded_permit_gives_its_units_back(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(groups=Rate(3, per=1), margin=0), clock=clock)
    permit = await limiter.acquire([("groups", 3)])
    permit.refund()
    permit.refund()  # idempotent
    await limiter.acquire([("groups", 3)])
    assert clock.sleeps == []


async def test_a_refusal_late_in_a_window_sets_the_limit_to_what_was_accepted(
    clock: VirtualClock,
):
    limiter = SlidingWindowLimiter(RateLimits(rooms=Rate(100, per=1), margin=0), clock=clock)
    await limiter.acquire([("rooms", 80)])
    refused = await limiter.acquire([("rooms", 10)])
    refused.refund()  # the transport refunds a refused request before penalizing
    limiter.penalize([("rooms", 10)])
    assert await limiter.effective_limit("rooms") == pytest.approx(76)  # 95% of the 80 accepted


async def test_a_refusal_of_a_full_window_widens_the_window_instead(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(rooms=Rate(100, per=1), margin=0), clock=clock)
    await limiter.acquire([("rooms", 90)])
    refused = await limiter.acquire([("rooms", 10)])
    refused.refund()
    limiter.penalize([("rooms", 10)])  # it filled the window exactly: a timing artifact
    assert await limiter.effective_limit("rooms") == 100
    start = clock.now()
    await limiter.acquire([("rooms", 11)])  # waits for the first 90 to leave the window
    assert clock.now() == pytest.approx(start + 1.01)  # one window plus 1% of it


async def test_early_refusals_cut_by_thirty_percent_once_a_window(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(rooms=Rate(100, per=1), margin=0), clock=clock)
    await limiter.acquire([("rooms", 1)])
    limiter.penalize([("rooms", 1)])
    assert await limiter.effective_limit("rooms") == pytest.approx(70)
    limiter.penalize([("rooms", 1)])  # the same window: no second cut
    assert await limiter.effective_limit("rooms") == pytest.approx(70)
    clock.advance(1.0)
    limiter.penalize([("rooms", 1)])
    assert await limiter.effective_limit("rooms") == pytest.approx(49)
    for _ in range(20):
        clock.advance(1.0)
        limiter.penalize([("rooms", 1)])
    assert await limiter.effective_limit("rooms") == 10  # never below 10% of the configured limit


async def test_the_limit_holds_then_probes_upwards_and_backs_off_further(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(rooms=Rate(100, per=1), margin=0), clock=clock)
    await limiter.acquire([("rooms", 80)])
    limiter.penalize([("rooms", 5)])
    assert await limiter.effective_limit("rooms") == pytest.approx(76)
    clock.advance(8.0)  # held for 8 windows
    assert await limiter.effective_limit("rooms") == pytest.approx(76)
    clock.advance(2.0)  # then probing: +5 a window
    assert await limiter.effective_limit("rooms") == pytest.approx(86)
    # A refusal while probing above 76, even one that filled the window: back below what
    # was accepted, and a 16-window hold.
    await limiter.acquire([("rooms", 80)])
    limiter.penalize([("rooms", 6)])
    assert await limiter.effective_limit("rooms") == pytest.approx(76)
    clock.advance(16.0)
    assert await limiter.effective_limit("rooms") == pytest.approx(76)
    clock.advance(100.0)
    assert await limiter.effective_limit("rooms") == 100  # back to the configured limit


async def test_a_lowered_rate_admits_fewer_units_per_window(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(rooms=Rate(100, per=1), margin=0), clock=clock)
    await limiter.acquire([("rooms", 1)])
    limiter.penalize([("rooms", 1)])  # 70 a second
    start = clock.now()
    for _ in range(69):
        await limiter.acquire([("rooms", 1)])
    assert clock.now() == start
    await limiter.acquire([("rooms", 1)])
    assert clock.now() > start


async def test_a_claim_on_a_switched_off_limit_is_free(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(send_calls=None), clock=clock)
    for _ in range(500):
        await limiter.acquire([("send_calls", 1)])
    assert clock.sleeps == []
    assert await limiter.effective_limit("send_calls") is None


async def test_a_refusal_just_after_the_window_slid_is_jitter_not_a_lower_limit(
    clock: VirtualClock,
):
    limiter = SlidingWindowLimiter(RateLimits(rooms=Rate(100, per=1), margin=0), clock=clock)
    await limiter.acquire([("rooms", 100)])
    clock.advance(1.0)  # the window slides: the 100 units leave it
    refused = await limiter.acquire([("rooms", 10)])
    refused.refund()
    limiter.penalize([("rooms", 10)])  # the server still counted the old 100: jitter
    assert await limiter.effective_limit("rooms") == 100


async def test_a_late_answer_keeps_its_claim_in_the_window_until_a_window_after_it(
    clock: VirtualClock,
):
    limiter = SlidingWindowLimiter(RateLimits(users=Rate(10, per=1), margin=0.02), clock=clock)
    t0 = clock.now()
    slow = await limiter.acquire([("users", 5)])
    fast = await limiter.acquire([("users", 5)])
    clock.advance(0.005)
    fast.settle()  # within margin / 2: leaves 1.02 s after its start
    clock.advance(0.195)
    slow.settle()  # answered 0.2 s after its start: the service may have counted it then
    slow.settle()  # idempotent
    await limiter.acquire([("users", 5)])
    assert clock.now() == pytest.approx(t0 + 1.02)
    await limiter.acquire([("users", 5)])
    # Without the service's timestamp the whole round trip is charged.
    assert clock.now() == pytest.approx(t0 + 0.2 + 1.02)


async def test_a_refund_after_the_claim_left_the_window_frees_nothing_twice(clock: VirtualClock):
    limiter = SlidingWindowLimiter(RateLimits(users=Rate(10, per=1), margin=0), clock=clock)
    first = await limiter.acquire([("users", 10)])
    clock.advance(1.5)
    await limiter.acquire([("users", 10)])  # the first left the window
    first.refund()  # refused long after: it had already left
    start = clock.now()
    await limiter.acquire([("users", 1)])  # the window is still full
    assert clock.now() == pytest.approx(start + 1.0)


async def test_bulk_leaves_the_headroom_free_and_interactive_never_queues_behind_it(
    clock: VirtualClock,
):
    limits = RateLimits(users=Rate(100, per=10), margin=0, bulk_headroom=0.05)
    limiter = SlidingWindowLimiter(limits, clock=clock)
    dedicated = SlidingWindowLimiter(attrs.evolve(limits, bulk_headroom=0), clock=clock)
    permit = await dedicated.acquire([("users", 100)], min_units=1, priority="bulk")
    assert permit.units == 100  # a worker that only sends bulk takes the whole window
    t0 = clock.now()
    permit = await limiter.acquire([("users", 100)], min_units=1, priority="bulk")
    assert permit.units == 95  # before any interactive request: the headroom stays free
    for _ in range(5):
        await limiter.acquire([("users", 1)])  # interactive: at once, in the headroom
    assert clock.now() == t0
    # Bulk waits for its 95 to leave; an interactive send does not queue behind it.
    await limiter.acquire([("users", 10)], priority="bulk")
    assert clock.now() == t0 + 10


async def test_an_interactive_send_does_not_queue_behind_waiting_bulk_work():
    clock = SteppedClock()
    limits = RateLimits(users=Rate(10, per=1), margin=0, bulk_headroom=0.2)
    limiter = SlidingWindowLimiter(limits, clock=clock)
    starts: dict[str, float] = {}

    async def take(name: str, units: int, priority: Priority) -> None:
        try:
            await limiter.acquire([("users", units)], priority=priority)
            starts[name] = clock.now()
        finally:
            clock.done()

    await limiter.acquire([("users", 1)])  # a web send
    await limiter.acquire([("users", 7)], priority="bulk")
    async with anyio.create_task_group() as tg:
        for name, units, priority in (("bulk", 8, "bulk"), ("web", 2, "interactive")):
            clock.running += 1
            tg.start_soon(take, name, units, priority)
            await anyio.lowlevel.checkpoint()
        await clock.run()
    assert starts == {"web": 1000.0, "bulk": 1001.0}


async def test_a_flood_of_interactive_sends_leaves_bulk_its_minimum_share():
    clock = SteppedClock(autojump=True)
    limits = RateLimits(users=Rate(10, per=1), margin=0, bulk_headroom=0, bulk_min_share=0.6)
    limiter = SlidingWindowLimiter(limits, clock=clock)
    starts: list[tuple[float, str]] = []

    async def take(at: float, units: int, priority: Priority) -> None:
        try:
            await clock.sleep(at)
            await limiter.acquire([("users", units)], priority=priority)
            starts.append((clock.now(), priority))
        finally:
            clock.done()

    async with anyio.create_task_group() as tg:
        # Interactive sends, one every 0.1 s, fill every window; bulk work arrives at 0.95.
        arrivals = [(0.1 * i, 1, "interactive") for i in range(30)] + [(0.95, 6, "bulk")]
        for at, units, priority in arrivals:
            clock.running += 1
            tg.start_soon(take, at, units, priority)
        await clock.run()
    # While bulk waited, interactive sends could hold at most 40% of the window: bulk
    # started once six of the first window's ten had left (without the share, the
    # interactive sends would have taken each freed unit until the flood ended at 3.0).
    bulk = [t for t, priority in starts if priority == "bulk"]
    assert bulk == [pytest.approx(1001.5)]
    assert len(starts) == 31  # every claim admitted


ARRIVALS = arrivals(ticks=48, units=30, most=30)


@settings(max_examples=80, deadline=None)
@given(
    limit=st.integers(1, 30),
    headroom=st.sampled_from([0.0, 0.1, 0.3]),
    min_share=st.sampled_from([0.0, 0.4, 1.0]),
    arrivals=ARRIVALS,
)
def test_any_interleaving_of_interactive_and_bulk_claims_keeps_every_window(
    limit, headroom, min_share, arrivals
):
    """Concurrent interactive and bulk claims of any sizes, whole or shrinkable, arriving at
    any times: every claim is admitted, and no window of `per` ever holds over `limit`."""
    limits = RateLimits(
        users=Rate(limit, per=1), margin=0, bulk_headroom=headroom, bulk_min_share=min_share
    )
    arrivals = [
        (at, min(units, limit), priority, shrink) for at, units, priority, shrink in arrivals
    ]

    async def scenario() -> list[Start]:
        clock = SteppedClock(autojump=True)
        return await admit_all([SlidingWindowLimiter(limits, clock=clock)], clock, arrivals)

    starts = anyio.run(scenario)
    assert len(starts) == len(arrivals)
    assert most_in_any_window(starts, per=1) <= limit
    for at, start, units, _ in starts:
        assert start >= at
        assert units >= 1


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 8).map(lambda ticks: ticks / 16), min_size=1, max_size=15),
    bulk=st.lists(st.integers(5, 100), min_size=1, max_size=10),
)
def test_interactive_sends_within_the_headroom_never_wait_for_saturating_bulk_work(gaps, bulk):
    """Three fan-out workers keep bulk work queued all along; single sends arrive at any
    times, at most the headroom (5 of 100) in any window: not one of them waits."""
    limits = RateLimits(users=Rate(100, per=1), margin=0, bulk_headroom=0.05)
    times: list[float] = []
    at = 0.25  # the workers have filled the window by then
    for gap in gaps:
        at += gap
        if sum(1 for t in times if t > at - 1) < 5:  # the window still has headroom left
            times.append(at)

    async def scenario() -> list[Start]:
        clock = SteppedClock(start=0.0, autojump=True)
        limiter = SlidingWindowLimiter(limits, clock=clock)
        return await saturate(limiter, limiter, clock, times, bulk)

    starts = anyio.run(scenario)
    interactive = sorted(
        (at, start) for at, start, _, priority in starts if priority == "interactive"
    )
    assert interactive == [(t, t) for t in times]
    assert most_in_any_window(starts, per=1) <= 100


def test_priority_and_shares_are_validated():
    with pytest.raises(ValidationError, match="bulk_headroom"):
        RateLimits(bulk_headroom=1.5)
    with pytest.raises(ValidationError, match="bulk_min_share"):
        RateLimits(bulk_min_share=-0.1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("users", 5), ("groups", "x"), ("rooms", None), ("other", (100, 1)), ("send_calls", 100)],
)
def test_every_limit_must_be_a_rate(field, value):
    with pytest.raises(ValidationError, match=rf"^{field}: must be a Rate"):
        RateLimits(**{field: value})
    assert RateLimits(send_calls=None).send_calls is None  # the call rate may be switched off


@pytest.mark.parametrize("margin", [-0.1, "0.02", True])
def test_the_margin_is_a_number_of_seconds(margin):
    with pytest.raises(ValidationError, match=r"^margin: "):
        RateLimits(margin=margin)


async def test_two_requests_claiming_the_same_limits_in_other_orders_never_deadlock(clock):
    """Locks were taken in the order claims were given: one request holding ``users`` and
    waiting for ``send_calls`` while another held ``send_calls`` and waited for ``users``
    waited forever. They are taken in one global order now."""
    limits = RateLimits(users=Rate(1, per=1), send_calls=Rate(1, per=1), margin=0)
    limiter = SlidingWindowLimiter(limits, clock=clock)
    await limiter.acquire([("users", 1), ("send_calls", 1)])  # both windows full
    admitted: list[str] = []

    async def take(name: str, claims: list[Claim]) -> None:
        await limiter.acquire(claims)
        admitted.append(name)

    with anyio.fail_after(10):  # real seconds: a deadlock never ends by itself
        async with anyio.create_task_group() as tg:
            tg.start_soon(take, "users first", [("users", 1), ("send_calls", 1)])
            await anyio.lowlevel.checkpoint()
            tg.start_soon(take, "calls first", [("send_calls", 1), ("users", 1)])
    assert admitted == ["users first", "calls first"]
