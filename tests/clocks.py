"""Test clocks for scenarios the public MockClock leaves to the test: stepped, parked, gated."""

from __future__ import annotations

import heapq

import anyio
import anyio.lowlevel


class SteppedClock:
    """Virtual time for concurrent tasks: each sleeper wakes at its own deadline, and time
    jumps to the next deadline only once every task of the scenario is asleep or done."""

    def __init__(self, start: float = 1000.0, *, autojump: bool = False) -> None:
        #: Jump once every task of the event loop is blocked (tasks may also wait on
        #: locks); otherwise once every running task sleeps on this clock (tasks may be
        #: waiting for real I/O, such as a Redis reply, which must not let time jump).
        self.autojump = autojump
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._changed = anyio.Event()
        self.running = 0

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        woken = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + max(seconds, 0.0), id(woken), woken))
        self._changed.set()
        await woken.wait()

    def done(self) -> None:
        self.running -= 1
        self._changed.set()

    async def all_asleep(self) -> None:
        """Wait until every running task sleeps on this clock."""
        while len(self._sleepers) < self.running:
            self._changed = anyio.Event()
            await self._changed.wait()

    async def run(self) -> None:
        """Jump from deadline to deadline until every task is done."""
        while self.running:
            if self.autojump:
                await anyio.wait_all_tasks_blocked()
                if not self._sleepers:
                    continue
            else:
                await self.all_asleep()
                if not self._sleepers:
                    continue  # the last running task has just finished
            deadline = self._sleepers[0][0]
            self._now = max(self._now, deadline)
            while self._sleepers and self._sleepers[0][0] <= deadline:
                heapq.heappop(self._sleepers)[2].set()
            await anyio.lowlevel.checkpoint()


class InstantClock:
    """Virtual time whose ``sleep`` advances it at once: a base for test clocks that take
    over ``sleep`` (park it, gate it, count it). The public ``MockClock`` is final."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()

    def advance(self, seconds: float) -> None:
        self._now += seconds
