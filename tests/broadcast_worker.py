"""One process of the shared broadcast-quota tests: broadcasts through a RedisLimiter.

    python -m tests.broadcast_worker EMULATOR_URL REDIS_URL TO COUNT DAILY_ONLY

Attempts COUNT broadcasts to TO (``users``, ...) one after the other, under the documented
broadcast limits, or under a daily limit of 3 alone when DAILY_ONLY is ``1``; prints one JSON
line per attempt: ``{"sent": id}`` or ``{"refused": ISO time it could be sent}``.
"""

from __future__ import annotations

import json
import sys

import anyio
import redis.asyncio

from agora_chat_async import (
    AgoraChatClient,
    BroadcastLimits,
    DailyLimit,
    LimitReachedError,
    RateLimits,
    RedisLimiter,
    StaticToken,
    TextBody,
)


async def main(url: str, redis_url: str, to: str, count: int, daily_only: bool) -> None:
    broadcasts = BroadcastLimits(users=(DailyLimit(3),)) if daily_only else BroadcastLimits()
    limits = RateLimits(broadcasts=broadcasts)
    client = redis.asyncio.from_url(redis_url)
    limiter = RedisLimiter(client, rate_limits=limits, cold_start_wait=False)
    try:
        async with AgoraChatClient(
            url, "test-org", "test-app", auth=StaticToken("test-token"), limiter=limiter
        ) as chat:
            for index in range(count):
                try:
                    body = TextBody(msg=f"broadcast {index}")
                    sent = await chat.broadcast(to, body)  # type: ignore[arg-type]
                except LimitReachedError as refused:
                    outcome = {"refused": refused.available_at.isoformat()}
                else:
                    outcome = {"sent": sent.id}
                sys.stdout.write(json.dumps(outcome) + "\n")
                sys.stdout.flush()
    finally:
        await client.aclose()


if __name__ == "__main__":
    args = sys.argv[1:]
    anyio.run(main, args[0], args[1], args[2], int(args[3]), args[4] == "1")
