"""Shared pieces of the benchmarks: an emulator process on 127.0.0.1 and the aiolimiter baseline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from aiolimiter import AsyncLimiter

from agora_chat_async import Claim, Limiter, Permit, Priority, RateLimits
from agora_chat_async.testing._server import free_port


def _pin(cpu: int) -> None:
    """Keep this process on one core, where the platform allows it (Linux)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run `python -m agora_chat_async.testing` on a free local port; yield its base URL.

    On Linux the server runs on the second core and the benchmark on the first, so that
    the two do not take turns on the same core and the client's cost is what is measured.
    """
    with emulator_with_pid(*args) as (url, _):
        yield url


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def emulator_with_pid(*args: str) -> Iterator[tuple[str, int]]:
    """:func:`emulator_process`, yielding the server's process id too."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "agora_chat_async.testing", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: _pin(1),  # noqa: PLW1509 - no threads exist yet in the child
    )
    _pin(0)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/_emulator/stats", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.05)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


async def stats(url: str) -> dict[str, Any]:
    """The emulator's inspection record."""
    async with httpx.AsyncClient(timeout=10) as http:
        result: dict[str, Any] = (await http.get(f"{url}/_emulator/stats")).json()
    return result


async def reset(url: str) -> None:
    """Forget every delivery, count and window of the emulator."""
    async with httpx.AsyncClient(timeout=10) as http:
        (await http.post(f"{url}/_emulator/reset")).raise_for_status()


class AiolimiterBaseline(Limiter):
    """The obvious limiter: one aiolimiter bucket per limit, sized like the quota.

    aiolimiter reads the event loop's real clock, so a time-scaled quota of
    ``limit`` per ``per`` emulated seconds becomes ``limit`` per ``per / scale`` seconds.
    """

    def __init__(self, rate_limits: RateLimits, scale: float) -> None:
        self._rate_limits = rate_limits
        self._buckets: dict[str, AsyncLimiter] = {}
        for name in ("users", "groups", "rooms", "other", "send_calls"):
            rate = rate_limits.rate(name)  # type: ignore[arg-type]
            if rate is not None:
                self._buckets[name] = AsyncLimiter(rate.limit, rate.per / scale)

    @property
    def rate_limits(self) -> RateLimits:
        return self._rate_limits

    async def acquire(
        self,
        claims: Sequence[Claim],
        *,
        min_units: int | None = None,
        priority: Priority = "interactive",
    ) -> Permit:
        """Every claim whole (a bucket cannot say how much of a claim fits now)."""
        for name, units in claims:
            bucket = self._buckets.get(name)
            if bucket is not None:
                await bucket.acquire(units)
        return Permit(units=claims[0][1] if claims else 0)
