"""The limiter on a network, in virtual time: what the service counts, not what the client starts.

A model of the network between the client and a strict sliding-window service: every
request waits a forward delay (a route's base delay, changed at random times, plus jitter
within a bound) before the service counts it, the service's time, and a return delay
before the answer; the first request of each connection waits one more round trip (a
handshake, or a proxy opening its own). Answers carry the service's ``timestamp`` and
``duration`` on its own clock, which runs 1,000 s ahead of ours. The property: under the
assumptions ``_window_rules`` states (a route may get slower by any amount, and faster by at
most ``margin / 2`` between two changes), no window of the service holds more than the
limit, and every claim is admitted. Two more tests show that the property can fail, each
by a figure measured in the same run: claims left at their start overfill the service's
window, and today's rule (the whole round trip charged) leaves a quarter of the quota
unused at a 300 ms round trip, where the library is within 5% of the best.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora_chat_async import (
    Claim,
    Limiter,
    Permit,
    Priority,
    Rate,
    RateLimits,
    ServerTiming,
    SlidingWindowLimiter,
)
from agora_chat_async._service_clock import ServiceClock
from agora_chat_async.testing import MockClock

LIMIT = 20
MARGIN = 0.02
LIMITS = RateLimits(rooms=Rate(LIMIT, per=1), margin=MARGIN, bulk_headroom=0)
SERVER_CLOCK_AHEAD = 1000.0


@attrs.frozen
class Route:
    """From ``at`` on, requests wait ``forward`` (plus up to ``jitter``) to be counted and
    ``back`` (plus up to ``jitter``) for their answer."""

    at: float
    forward: float
    back: float


@attrs.frozen
class Network:
    routes: tuple[Route, ...]
    #: Up to this much more on the way to the service; ``back_jitter`` (by default the
    #: same) on the way back.
    jitter: float
    service_time: float
    handshake: bool = True
    back_jitter: float | None = None

    def route(self, at: float) -> Route:
        """The route in force *at* seconds after the start."""
        index = bisect_right([r.at for r in self.routes], at) - 1
        return self.routes[max(index, 0)]


@st.composite
def networks(draw: st.DrawFn) -> Network:
    """Routes that change every 1.5 to 4 s: slower by up to 300 ms, faster by at most
    ``margin / 2``; forward jitter up to ``margin / 2`` (so that the fastest answer seen is
    within ``margin`` of any request to come: the assumption), return jitter up to 50 ms;
    up to 20 ms of service time."""
    forward = draw(st.floats(0.0, 0.2))
    back = draw(st.floats(0.0, 0.2))
    routes = [Route(0.0, forward, back)]
    at = 0.0
    for _ in range(draw(st.integers(0, 4))):
        at += draw(st.floats(1.5, 4.0))
        faster = draw(st.booleans())
        if faster:
            forward = max(0.0, forward - draw(st.floats(0.0, MARGIN / 2)))
        else:
            forward += draw(st.floats(0.0, 0.3))
        back = draw(st.floats(0.0, 0.3))
        routes.append(Route(at, forward, back))
    return Network(
        routes=tuple(routes),
        jitter=draw(st.floats(0.0, MARGIN / 2)),
        back_jitter=draw(st.floats(0.0, 0.05)),
        service_time=draw(st.floats(0.0, 0.02)),
    )


@attrs.define
class Service:
    """The service's side: when it counted each request, on its own clock."""

    counted: list[tuple[float, int]] = attrs.field(factory=list)

    def peak(self, per: float) -> int:
        """The most units counted in any window ``(t - per, t]``."""
        times = sorted(self.counted)
        most = 0
        for index, (end, _) in enumerate(times):
            start = bisect_right([t for t, _ in times], end - per)
            most = max(most, sum(u for _, u in times[start : index + 1]))
        return most

    def use(self, per: float, limit: int) -> float:
        """The shortest span any client could achieve for the units, over the span."""
        times = [t for t, _ in self.counted]
        units = sum(u for _, u in self.counted)
        shortest = (math.ceil(units / limit) - 1) * per
        span = max(times) - min(times)
        return shortest / span if span > 0 else 1.0


async def run(
    limiter: Limiter,
    clock: MockClock,
    network: Network,
    *,
    connections: int,
    requests: int,
    units: int,
    seed: int = 0,
) -> Service:
    """*connections* tasks sending ``connections x requests`` requests of *units* rooms,
    each task the next one left as soon as its last is answered (as a fan-out's senders
    share its batches), over a pool of connections as httpx keeps one: a request takes a
    connection that has answered if one is idle, else opens one (whose first request
    waits the handshake)."""
    service = Service()
    rng = random.Random(seed)
    origin = clock.now()
    idle = 0  # connections that answered and wait for a request
    left = connections * requests

    async def connection() -> None:
        nonlocal idle, left
        while left > 0:
            left -= 1
            permit = await limiter.acquire([("rooms", units)], priority="bulk")
            permit.sending()  # as the client's pipeline does
            new = idle == 0
            idle -= 0 if new else 1
            started = clock.now()
            route = network.route(started - origin)
            forward = route.forward + rng.uniform(0.0, network.jitter)
            if new and network.handshake:
                forward += route.forward + route.back
            await clock.sleep(forward)
            counted = clock.now()
            service.counted.append((counted, units))
            await clock.sleep(network.service_time)
            timestamp = clock.now() + SERVER_CLOCK_AHEAD
            back_jitter = network.jitter if network.back_jitter is None else network.back_jitter
            await clock.sleep(route.back + rng.uniform(0.0, back_jitter))
            # The service's readings are whole milliseconds.
            permit.settle(
                ServerTiming(
                    math.floor(timestamp * 1000) / 1000,
                    math.floor(network.service_time * 1000) / 1000,
                    new_connection=new,
                )
            )
            idle += 1

    with anyio.fail_after(10_000):  # virtual seconds: every claim is admitted
        async with anyio.create_task_group() as tasks:
            for _ in range(connections):
                tasks.start_soon(connection)
    return service


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    network=networks(),
    connections=st.integers(1, 8),
    units=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
async def test_the_services_window_never_exceeds_the_limit_on_any_network(
    network, connections, units, seed
):
    clock = MockClock()
    limiter = SlidingWindowLimiter(LIMITS, clock=clock)
    requests = math.ceil(8 * LIMIT / (connections * units))  # about 8 windows
    service = await run(
        limiter, clock, network, connections=connections, requests=requests, units=units, seed=seed
    )
    assert sum(u for _, u in service.counted) == connections * requests * units
    assert service.peak(1.0) <= LIMIT


class Rewrapped(Limiter):
    """The in-memory limiter, its permits' answers rewritten by *answer* (``None``: the
    permits never hear of their answers, and claims leave ``per + margin`` after their
    start, whatever the network: the unsafe extreme)."""

    def __init__(
        self,
        clock: MockClock,
        answer: Callable[[ServerTiming | None], ServerTiming | None] | None,
    ) -> None:
        self._inner = SlidingWindowLimiter(LIMITS, clock=clock)
        self._answer = answer

    @property
    def rate_limits(self) -> RateLimits:
        return self._inner.rate_limits

    async def acquire(
        self,
        claims: Sequence[Claim],
        *,
        min_units: int | None = None,
        priority: Priority = "interactive",
    ) -> Permit:
        permit = await self._inner.acquire(claims, min_units=min_units, priority=priority)
        answer = self._answer
        if answer is None:
            return Permit(permit.refund, units=permit.units)
        return Permit(
            permit.refund,
            units=permit.units,
            settle=lambda timing: permit.settle(answer(timing)),
            sending=permit.sending,
        )


def anchored_at_start(clock: MockClock) -> Limiter:
    return Rewrapped(clock, None)


def whole_round_trip(clock: MockClock) -> Limiter:
    """Today's rule before the service's clock was read: the whole round trip charged."""
    return Rewrapped(clock, lambda timing: None)


#: A 300 ms round trip whose forward delay varies by 30 ms; a slow first window (the
#: first request of each connection waits a handshake).
SLOW = Network(routes=(Route(0.0, 0.15, 0.15),), jitter=0.03, service_time=0.001)


async def measured(network: Network, make: Callable[[MockClock], Limiter] | None = None) -> Service:
    """792 rooms, 2 a request, from 11 senders: 39.6 windows' worth (a last window with
    room). The unit a cold window keeps for the first floor goes a round trip late, and
    its place in every later window stays late: a job whose last window is full finishes
    about as late as when every claim of the first window waited for the next window's
    answers (measured here with 10 x 40 x 2: 94.9% against 95.4%), one whose last window
    has room a round trip sooner (here 96.4% against 95.6%)."""
    clock = MockClock()
    limiter = SlidingWindowLimiter(LIMITS, clock=clock) if make is None else make(clock)
    return await run(limiter, clock, network, connections=11, requests=36, units=2, seed=1)


async def test_claims_anchored_at_their_start_overfill_the_services_window():
    library, unsafe = await measured(SLOW), await measured(SLOW, anchored_at_start)
    assert library.peak(1.0) <= LIMIT
    # The slow first window (handshakes) lets the next window's requests start while the
    # service still counts the first: it sees more than the limit in one second.
    assert unsafe.peak(1.0) > LIMIT


async def test_charging_the_whole_round_trip_wastes_the_quota_that_the_library_uses():
    library, whole = await measured(SLOW), await measured(SLOW, whole_round_trip)
    assert whole.peak(1.0) <= LIMIT
    assert library.peak(1.0) <= LIMIT
    # The library charges the forward delay's variation (up to 30 ms), not the 300 ms
    # round trip: it finishes within 5% of the shortest possible span; the old rule cannot.
    assert library.use(1.0, LIMIT) >= 0.95
    assert whole.use(1.0, LIMIT) < 0.85
    assert library.use(1.0, LIMIT) - whole.use(1.0, LIMIT) > 0.1


async def test_a_cold_window_keeps_a_unit_for_the_first_floor(monkeypatch):
    """The first window's requests all open connections, so none of their answers is a
    sample of the floor: the unit kept back goes on a connection that answered, and its
    answer brings the floor before the next window is due, which then starts a round trip
    sooner. Without it, the first floor comes from the next window's answers."""
    library = await measured(SLOW)
    monkeypatch.setattr("agora_chat_async._window.kept_for_a_floor", lambda *a, **k: 0)
    unkept = await measured(SLOW)
    assert library.peak(1.0) <= LIMIT
    assert unkept.peak(1.0) <= LIMIT
    # 96.4% against 95.6%: 0.3 s of a 39 s span.
    assert library.use(1.0, LIMIT) - unkept.use(1.0, LIMIT) > 0.005


async def test_the_first_floor_moves_the_cold_window_less_the_spread_of_its_offsets(
    monkeypatch,
):
    """The first floor comes from one answer, whose forward delay here may be up to 30 ms
    above the fastest (more than the margin): the cold claims it moves earlier, placed
    against that floor alone, let the next window start too soon."""
    assert (await measured(SLOW)).peak(1.0) <= LIMIT
    take = ServiceClock.take_spread
    monkeypatch.setattr(ServiceClock, "take_spread", lambda self: take(self) * 0)
    assert (await measured(SLOW)).peak(1.0) > LIMIT


#: A forward delay that varies by 100 ms: claims left at their start overfill the window.
JITTERY = Network(routes=(Route(0.0, 0.1, 0.1),), jitter=0.1, service_time=0.001)


async def test_a_jittery_network_overfills_claims_left_at_their_start():
    assert (await measured(JITTERY, anchored_at_start)).peak(1.0) > LIMIT


@pytest.mark.parametrize("timestamp", [None, 0.001, 1e12])
async def test_a_missing_or_absurd_timestamp_costs_speed_never_the_window(timestamp):
    """Answers without a timestamp, or with a stuck one far in the past or the future:
    the clock contradicts itself, the whole round trip is charged, the window holds on a
    network where claims left at their start overfill it."""

    def lie(timing: ServerTiming | None) -> ServerTiming | None:
        if timestamp is None or timing is None:
            return None
        return attrs.evolve(timing, timestamp=timestamp)

    service = await measured(JITTERY, lambda clock: Rewrapped(clock, lie))
    assert service.peak(1.0) <= LIMIT
