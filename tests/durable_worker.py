"""A worker process of the durable fan-out tests: runs one job from a RedisProgressStore.

    python -m tests.durable_worker EMULATOR_URL REDIS_URL JOB USERS LEASE

Sends one message to USERS users named ``user-<i>`` as job JOB, seven users a request and
seven requests a second, printing ``started`` once the job is running. The tests kill it.
"""

from __future__ import annotations

import sys

import anyio
import redis.asyncio

from agora_chat_async import (
    AgoraChatClient,
    Rate,
    RateLimits,
    RedisProgressStore,
    StaticToken,
    TextBody,
)


async def main(url: str, redis_url: str, job: str, users: str, lease: str) -> None:
    ids = [f"user-{index:03d}" for index in range(int(users))]
    store = redis.asyncio.from_url(redis_url)
    try:
        limits = RateLimits(users=Rate(7, per=0.15), margin=0)
        async with AgoraChatClient(
            url, "test-org", "test-app", auth=StaticToken("test-token"), rate_limits=limits
        ) as client:
            progress = RedisProgressStore(store, lease=float(lease))
            async with client.durable_fan_out(
                ids, TextBody(msg="durable"), job=job, store=progress, concurrency=2
            ) as results:
                sys.stdout.write("started\n")
                sys.stdout.flush()
                async for _ in results:
                    pass
    finally:
        await store.aclose()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:6])
