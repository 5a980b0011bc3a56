"""Clocks for tests and for the emulator: virtual time, and real time sped up."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import final

import anyio
import anyio.lowlevel
import attrs
import sniffio

__all__ = ["MockClock", "ScaledClock"]


@attrs.define(eq=False)
class _Sleeper:
    deadline: float
    order: int
    woken: anyio.Event = attrs.field(factory=anyio.Event)
    done: bool = False

    def __lt__(self, other: _Sleeper) -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)


async def _wait_all_tasks_blocked() -> None:
    """Return once every other task of the event loop waits for something.

    anyio's own version polls every 0.1 s on asyncio; here each poll is one pass of the
    event loop, so a jump costs microseconds. Callbacks already scheduled (a task that
    just finished, whose task group is about to wake its parent) count as work still to
    do. A task waiting for real I/O or a thread is waiting too.
    """
    if sniffio.current_async_library() != "asyncio":
        await anyio.wait_all_tasks_blocked()
        return
    this, loop = asyncio.current_task(), asyncio.get_running_loop()
    while True:
        await asyncio.sleep(0)
        if getattr(loop, "_ready", None):  # callbacks still to run this pass
            continue
        for task in asyncio.all_tasks():
            waiter = getattr(task, "_fut_waiter", None)  # what anyio reads too
            if task is not this and (waiter is None or waiter.done()):
                break  # this one can run: let it
        else:
            return


@final
class MockClock:
    """Virtual time: every sleeper wakes at its own deadline.

    Time moves when you call :meth:`advance`, which wakes every sleeper whose deadline
    it reaches, and, with ``autojump=True`` (the default), by itself: whenever every
    task of the event loop is blocked, the clock jumps to the earliest deadline and
    wakes the sleepers due then, like trio's ``MockClock(autojump_threshold=0)``. Two
    tasks that each sleep 1 s both wake 1 s later; a test of a whole fan-out runs in
    virtual time, exactly and at once.

    A task waiting for real I/O (a socket to a real server, a thread) counts as
    blocked, so time may jump while it waits: a test that talks to a real server
    while tasks sleep on this clock passes ``autojump=False`` and moves time with
    :meth:`advance`.
    """

    def __init__(self, start: float = 1000.0, *, autojump: bool = True) -> None:
        self._now = start
        self.autojump = autojump
        self.sleeps: list[float] = []
        """Every duration slept on this clock, in order."""
        self._sleepers: list[_Sleeper] = []  # a heap, by deadline then arrival
        self._order = itertools.count()
        self._jumping = False  # one sleeper at a time watches for everything to block

    def now(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock reaches ``now() + seconds`` (a checkpoint for 0 or less)."""
        self.sleeps.append(seconds)
        if not seconds > 0:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self._now + seconds, next(self._order))
        heapq.heappush(self._sleepers, sleeper)
        try:
            while self._now < sleeper.deadline:
                if self.autojump and not self._jumping:
                    await self._jump_until(sleeper)
                else:
                    sleeper.woken = anyio.Event()
                    await sleeper.woken.wait()
        finally:
            sleeper.done = True
            self._hand_over()

    async def _jump_until(self, sleeper: _Sleeper) -> None:
        """Jump from deadline to deadline, each time everything is blocked, until *sleeper*'s."""
        self._jumping = True
        try:
            while self._now < sleeper.deadline:
                await _wait_all_tasks_blocked()
                self._drop_done()
                self._wake_until(max(self._now, self._sleepers[0].deadline))
        finally:
            self._jumping = False

    def _drop_done(self) -> None:
        while self._sleepers and self._sleepers[0].done:
            heapq.heappop(self._sleepers)

    def _wake_until(self, when: float) -> None:
        self._now = when
        self._drop_done()
        while self._sleepers and self._sleepers[0].deadline <= when:
            heapq.heappop(self._sleepers).woken.set()

    def _hand_over(self) -> None:
        """Wake the earliest sleeper so that it watches for the next jump (or leaves)."""
        self._drop_done()
        if self.autojump and not self._jumping and self._sleepers:
            self._sleepers[0].woken.set()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by *seconds*, waking every sleeper it reaches.

        Raises:
            ValueError: *seconds* is negative.
        """
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._wake_until(self._now + seconds)

    def __repr__(self) -> str:
        return f"MockClock(now={self._now!r}, autojump={self.autojump!r})"


@final
class ScaledClock:
    """Real monotonic time multiplied by ``scale``: ``ScaledClock(60)`` runs a minute a second.

    Give the same scale to the emulator (``time_scale=60``) and this clock to the
    client (``clock=ScaledClock(60)``) and both count the documented quotas in
    the same sped-up time. It reads ``time.monotonic()``, not the event loop, so
    an emulator served from another thread or process agrees with it.
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.scale = scale

    def now(self) -> float:
        """Scaled seconds since an arbitrary origin."""
        return time.monotonic() * self.scale

    async def sleep(self, seconds: float) -> None:
        """Sleep *seconds* of scaled time (``seconds / scale`` real seconds)."""
        await anyio.sleep(max(seconds, 0.0) / self.scale)

    def __repr__(self) -> str:
        return f"ScaledClock({self.scale!r})"
