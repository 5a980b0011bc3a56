"""The test clocks: MockClock wakes every sleeper at its own deadline; ScaledClock speeds up."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from agora_chat_async.testing import MockClock, ScaledClock


async def test_two_tasks_sleeping_one_second_both_wake_one_second_later():
    clock = MockClock(start=0.0)
    woke: list[float] = []

    async def nap() -> None:
        await clock.sleep(1.0)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(nap)
        tg.start_soon(nap)
    assert woke == [1.0, 1.0]
    assert clock.now() == 1.0


async def test_sleepers_wake_in_deadline_order_each_at_its_own_deadline():
    clock = MockClock(start=10.0)
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        for name, seconds in (("c", 3.0), ("a", 0.5), ("b", 2.0), ("a2", 0.5)):
            tg.start_soon(nap, name, seconds)
    assert woke == [("a", 10.5), ("a2", 10.5), ("b", 12.0), ("c", 13.0)]


async def test_a_sleeper_waits_while_another_task_can_still_run():
    clock = MockClock(start=0.0)
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        seen.append(clock.now())  # the sleeper has not jumped the clock yet

    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 5.0)
        tg.start_soon(busy)
    assert seen == [0.0]
    assert clock.now() == 5.0


async def test_time_jumps_while_a_task_waits_on_an_event_only_the_sleeper_sets():
    clock = MockClock(start=0.0)
    ready = anyio.Event()

    async def later() -> None:
        await clock.sleep(2.5)
        ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        await ready.wait()
    assert clock.now() == 2.5


async def test_a_cancelled_sleeper_leaves_the_others_on_time():
    clock = MockClock(start=0.0)
    woke: list[float] = []

    async def nap(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(nap, 4.0)

        async def cancel_first() -> None:
            await clock.sleep(0.5)
            tg_first.cancel_scope.cancel()

        async with anyio.create_task_group() as tg_first:
            tg_first.start_soon(clock.sleep, 3.0)
            tg_first.start_soon(cancel_first)
        assert clock.now() == 0.5
    assert woke == [4.0]


async def test_without_autojump_only_advance_moves_time_and_wakes_who_is_due():
    clock = MockClock(start=0.0, autojump=False)
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(nap, "short", 1.0)
        tg.start_soon(nap, "long", 3.0)
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        clock.advance(2.0)
        await anyio.wait_all_tasks_blocked()
        assert woke == [("short", 2.0)]
        clock.advance(1.0)
    assert woke == [("short", 2.0), ("long", 3.0)]


async def test_a_sleep_of_zero_or_less_is_a_checkpoint_and_every_sleep_is_recorded():
    clock = MockClock(start=0.0)
    await clock.sleep(0)
    await clock.sleep(-1)
    await clock.sleep(0.25)
    assert clock.now() == 0.25
    assert clock.sleeps == [0, -1, 0.25]
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-0.1)
    assert repr(clock) == "MockClock(now=0.25, autojump=True)"


async def test_the_scaled_clock_runs_scale_times_faster():
    clock = ScaledClock(1000)
    start = clock.now()
    await clock.sleep(50)  # 50 ms of real time
    assert clock.now() - start >= 50
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)
