"""One worker process of the multi-process tests and benchmark: sends through a RedisLimiter.

    python -m tests.redis_worker EMULATOR_URL REDIS_URL NAME USERS BATCH LIMIT PER MARGIN

Sends one message to USERS users named ``NAME-<i>``, BATCH of them per call, under
``users=Rate(LIMIT, per=PER)`` shared through Redis; prints one JSON line of counts.
"""

from __future__ import annotations

import json
import sys

import anyio
import redis.asyncio

from agora_chat_async import (
    AgoraChatClient,
    Rate,
    RateLimits,
    RedisLimiter,
    RetryPolicy,
    StaticToken,
    TextBody,
)


async def main(
    url: str,
    redis_url: str,
    name: str,
    users: int,
    batch: int,
    limit: int,
    per: float,
    margin: float,
) -> dict[str, int]:
    limits = RateLimits(users=Rate(limit, per=per), margin=margin)
    client = (  # "cluster+redis://...": a node of a Redis Cluster
        redis.asyncio.RedisCluster.from_url(redis_url.removeprefix("cluster+"))
        if redis_url.startswith("cluster+")
        else redis.asyncio.from_url(redis_url)
    )
    limiter = RedisLimiter(client, rate_limits=limits, cold_start_wait=False)
    counts = {"delivered": 0, "failed": 0, "unknown": 0}
    try:
        async with AgoraChatClient(
            url,
            "test-org",
            "test-app",
            auth=StaticToken("test-token"),
            limiter=limiter,
            retry=RetryPolicy(attempts=0, rate_limit_budget=0),
        ) as chat:
            for first in range(0, users, batch):
                ids = [f"{name}-{i}" for i in range(first, min(first + batch, users))]
                result = await chat.send_user_message(ids, TextBody(msg="hello"))
                counts["delivered"] += len(result.message_ids)
                counts["failed"] += len(result.failed)
                counts["unknown"] += len(result.unknown)
    finally:
        counts["round_trips"] = limiter._round_trips
        await client.aclose()
    return counts


if __name__ == "__main__":
    url, redis_url, name, users, batch, limit, per, margin = sys.argv[1:9]
    result = anyio.run(
        main, url, redis_url, name, int(users), int(batch), int(limit), float(per), float(margin)
    )
    sys.stdout.write(json.dumps(result) + "\n")
