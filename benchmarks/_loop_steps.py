"""How long the library holds the event loop: what another task on it waits.

A web backend awaits the client inside its request handlers; while the library's steps
run (packing a 600-recipient batch, reading 600 results, recording a durable job's
progress), no other handler runs. A watcher task sleeps 1 ms at a time on the same loop
and records how late it wakes: the steps run in one turn of the loop, which another
request's handler would have waited on too. The servers are emulator processes, so only
the client's own work runs on the measured loop.

(``tests/test_blocking.py`` checks exactly that no call waits on the disk, a name lookup,
a subprocess or ``time.sleep`` on the loop; a step's length is a timing, so it is here.)
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from agora_chat_async import (
    AgoraChatClient,
    FileProgressStore,
    Rate,
    RateLimits,
    StaticToken,
    TextBody,
)

BODY = TextBody(msg="Benchmark message: the same text for every recipient.")
HUGE = Rate(10**9, per=1)
LIMITS = RateLimits(users=HUGE, groups=HUGE, rooms=HUGE, other=HUGE, send_calls=HUGE, margin=0)
TICK = 0.001


async def watched(work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """Run *work* beside a watcher; the watcher's lags in ms (longest, 99th percentile)."""
    lags: list[float] = []

    async def watch() -> None:
        while True:
            started = time.perf_counter()
            await anyio.sleep(TICK)
            lags.append(max(time.perf_counter() - started - TICK, 0.0))

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await anyio.sleep(0.05)  # the watcher's own first steps
        lags.clear()
        await work()
        group.cancel_scope.cancel()
    lags.sort()
    return {
        "longest wait (ms)": lags[-1] * 1e3,
        "99th percentile (ms)": lags[int(len(lags) * 0.99)] * 1e3,
        "wake-ups": float(len(lags)),
    }


def client(url: str) -> AgoraChatClient:
    return AgoraChatClient(
        url, "test-org", "test-app", auth=StaticToken("test-token"), rate_limits=LIMITS
    )


async def fan_out(url: str, directory: Path, recipients: int) -> None:
    ids = [f"user-{index}" for index in range(recipients)]
    async with client(url) as chat, chat.fan_out(ids, BODY) as results:
        async for _ in results:
            pass


async def durable_fan_out(url: str, directory: Path, recipients: int) -> None:
    ids = [f"user-{index}" for index in range(recipients)]
    store = FileProgressStore(directory / f"job-{time.monotonic_ns()}.progress")
    async with (
        client(url) as chat,
        chat.durable_fan_out(ids, BODY, job="steps", store=store) as results,
    ):
        async for _ in results:
            pass


async def upload(url: str, directory: Path, size: int) -> None:
    path = directory / "upload.bin"
    if not path.exists():
        await anyio.Path(path).write_bytes(b"x" * size)
    async with client(url) as chat:
        await chat.upload_file(path, filename="upload.bin")


SCENARIOS: dict[str, tuple[Callable[[str, Path, int], Awaitable[None]], int]] = {
    "fan_out, 60,000 users": (fan_out, 60_000),
    "durable_fan_out (file store), 60,000 users": (durable_fan_out, 60_000),
    "upload_file, 10 MB from a path": (upload, 10_000_000),
}


async def loop_step_rows(url: str, runs: int) -> list[dict[str, Any]]:
    """*runs* measured runs of each scenario, after one unmeasured warm-up run of each."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for scenario, (work, size) in SCENARIOS.items():
            await work(url, directory, size)  # imports, converters, the first connection
            for _ in range(runs):
                row: dict[str, Any] = {"scenario": scenario}
                row.update(await watched(functools.partial(work, url, directory, size)))
                rows.append(row)
    return rows
