"""One worker process of the shared-quota benchmark (started by run.py, not by hand).

    python _shared_worker.py URL REDIS_URL NAME COUNT PER MARGIN MODE [HEADROOM]

Fans one message out to COUNT users named ``NAME-<i>`` under ``users=Rate(6000, per=PER)``
(real seconds), with a RedisLimiter (MODE ``redis``: no cold-start wait; ``redis-cold``:
the defaults, a window's wait when Redis has no record) or this process's own in-memory
limiter (MODE ``local``), leaving HEADROOM (``bulk_headroom``, the default if absent) free;
writes one JSON line of counts and times (``first_send``: when the first request left).

With ``AGORA_BENCH_TIME_SCALE=S`` in the environment, the RedisLimiter reads a
``ScaledClock(S)`` instead of Redis's ``TIME``, PER and MARGIN (real seconds) are scaled
to it, and every clock of the run (the emulator's answers' ``timestamp``, the limiter's
claims) runs at the same rate, as the service's and Redis's do: without it, the
emulator's timestamps run S times faster than the limiter's clock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import anyio
import attrs
import redis.asyncio

from agora_chat_async import (
    AgoraChatClient,
    Event,
    Limiter,
    Rate,
    RateLimits,
    RedisLimiter,
    RequestSent,
    SlidingWindowLimiter,
    StaticToken,
    TextBody,
)
from agora_chat_async.testing import ScaledClock


async def main(argv: list[str]) -> dict[str, Any]:
    url, redis_url, name, count, per, margin, mode, *headroom = argv
    scale = float(os.environ.get("AGORA_BENCH_TIME_SCALE", "0") or 0)
    clock = ScaledClock(scale) if scale else None
    factor = scale or 1.0
    limits = RateLimits(users=Rate(6000, per=float(per) * factor), margin=float(margin) * factor)
    if headroom:
        limits = attrs.evolve(limits, bulk_headroom=float(headroom[0]))
    store = redis.asyncio.from_url(redis_url)
    limiter: Limiter
    if mode.startswith("redis"):
        limiter = RedisLimiter(
            store, rate_limits=limits, cold_start_wait=mode == "redis-cold", clock=clock
        )
    else:
        limiter = SlidingWindowLimiter(limits)
    out: dict[str, Any] = {"delivered": 0, "failed": 0, "unknown": 0, "requests": 0}

    def on_event(event: Event) -> None:
        if isinstance(event, RequestSent) and "first_send" not in out:
            out["first_send"] = time.time() - event.elapsed

    try:
        async with AgoraChatClient(
            url,
            "test-org",
            "test-app",
            auth=StaticToken("test-token"),
            limiter=limiter,
            on_event=on_event,
        ) as client:
            out["first"] = time.time()
            users = (f"{name}-{index:07d}" for index in range(int(count)))
            async with client.fan_out(users, TextBody(msg="hello")) as results:
                async for result in results:
                    out["requests"] += 1
                    out["delivered"] += len(result.message_ids)
                    out["failed"] += len(result.failed)
                    out["unknown"] += len(result.unknown)
            out["last"] = time.time()
    finally:
        out["round_trips"] = getattr(limiter, "_round_trips", 0)
        await store.aclose()
    return out


if __name__ == "__main__":
    result = anyio.run(main, sys.argv[1:9])
    sys.stdout.write(json.dumps(result) + "\n")
