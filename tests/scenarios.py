"""Concurrent admission scenarios shared by the in-memory and the Redis limiter tests."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from hypothesis import strategies as st

from agora_chat_async import Limiter, Priority

from .clocks import SteppedClock

#: One arrival: (arrival time in seconds, units, priority, may shrink).
Arrival = tuple[float, int, Priority, bool]
#: One admission: (arrival, start, units granted, priority).
Start = tuple[float, float, int, Priority]


def arrivals(*, ticks: int, units: int, most: int) -> st.SearchStrategy[list[Arrival]]:
    """Lists of up to *most* arrivals: at 0 to *ticks* sixteenths of a second, of 1 to
    *units* units, either priority, whole or shrinkable."""
    return st.lists(
        st.tuples(
            st.integers(0, ticks).map(lambda tick: tick / 16),
            st.integers(1, units),
            st.sampled_from(["interactive", "bulk"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=most,
    )


async def admit_all(
    limiters: Sequence[Limiter], clock: SteppedClock, arrivals: Sequence[Arrival]
) -> list[Start]:
    """Every arrival acquires ``users`` claims at its time, concurrently, from the limiter of
    its index modulo ``len(limiters)`` (several processes); returns every admission.

    Fails (instead of hanging) if a claim is never admitted within ten real seconds.
    """
    starts: list[Start] = []
    origin = clock.now()

    async def take(index: int, at: float, units: int, priority: Priority, shrink: bool) -> None:
        try:
            await clock.sleep(at)
            permit = await limiters[index % len(limiters)].acquire(
                [("users", units)], min_units=1 if shrink else None, priority=priority
            )
            starts.append((at, clock.now() - origin, permit.units, priority))
        finally:
            clock.done()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for index, (at, units, priority, shrink) in enumerate(arrivals):
                clock.running += 1
                tg.start_soon(take, index, at, units, priority, shrink)
            await clock.run()
    return starts


async def saturate(
    worker: Limiter,
    web: Limiter,
    clock: SteppedClock,
    times: Sequence[float],
    sizes: Sequence[int],
) -> list[Start]:
    """Three fan-out tasks keep shrinkable bulk claims (of *sizes*, in turn) queued on
    *worker* until single 1-unit interactive sends, made on *web* at *times*, are done."""
    starts: list[Start] = []
    sent = 0

    async def fan_out(index: int) -> None:
        try:
            turn = index
            while sent < len(times):  # more to send than the single sends last
                turn += 1
                units = sizes[turn % len(sizes)]
                permit = await worker.acquire([("users", units)], min_units=1, priority="bulk")
                starts.append((clock.now(), clock.now(), permit.units, "bulk"))
        finally:
            clock.done()

    async def single(at: float) -> None:
        nonlocal sent
        try:
            await clock.sleep(at)
            await web.acquire([("users", 1)])
            starts.append((at, clock.now(), 1, "interactive"))
            sent += 1
        finally:
            clock.done()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for index in range(3):
                clock.running += 1
                tg.start_soon(fan_out, index)
            for at in times:
                clock.running += 1
                tg.start_soon(single, at)
            await clock.run()
    return starts


def most_in_any_window(starts: Sequence[Start], per: float) -> int:
    """The most units started in any interval ``[t, t + per)``."""
    return max(
        (sum(u for _, s, u, _ in starts if begin <= s < begin + per) for _, begin, _, _ in starts),
        default=0,
    )
