"""The web process of the two-process mixed benchmark (started by run.py, not by hand).

    python _web_worker.py URL REDIS_URL PER MARGIN

A web backend's traffic: one single ``send_user_message`` a second (to ``web-<i>``), each
timed around the call, through a ``RedisLimiter`` shared with a fan-out worker process,
under ``users=Rate(6000, per=PER)`` (real seconds: the limiter reads Redis's clock). It
stops when its standard input closes and writes one JSON line: the waits, in seconds.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import anyio.to_thread
import redis.asyncio

from agora_chat_async import (
    AgoraChatClient,
    Rate,
    RateLimits,
    RedisLimiter,
    StaticToken,
    TextBody,
)


async def main(argv: list[str]) -> dict[str, Any]:
    url, redis_url, per, margin = argv
    limits = RateLimits(users=Rate(6000, per=float(per)), margin=float(margin))
    store = redis.asyncio.from_url(redis_url)
    waits: list[float] = []
    failed = 0
    first = time.time()  # the first send is made a second after this
    limiter = RedisLimiter(store, rate_limits=limits, cold_start_wait=False)
    try:
        async with AgoraChatClient(
            url, "test-org", "test-app", auth=StaticToken("test-token"), limiter=limiter
        ) as client:

            async def web() -> None:
                nonlocal failed, first
                first = time.time()
                index = 0
                while True:
                    await anyio.sleep(1.0)
                    started = time.monotonic()
                    result = await client.send_user_message(f"web-{index}", TextBody(msg="hi"))
                    waits.append(time.monotonic() - started)
                    failed += len(result.failed) + len(result.unknown)
                    index += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(web)
                sys.stdout.write("ready\n")
                sys.stdout.flush()
                await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes it
                tg.cancel_scope.cancel()
    finally:
        await store.aclose()
    return {"waits": waits, "failed": failed, "first": first, "round_trips": limiter._round_trips}


if __name__ == "__main__":
    result = anyio.run(main, sys.argv[1:5])
    sys.stdout.write(json.dumps(result) + "\n")
