"""What one admission costs the Redis server, as a function of what the window holds.

A web backend that shares its quota through Redis sends single messages: one recipient a
claim. One process makes single-recipient admissions back to back on a virtual clock that
spaces them ``per / claims`` apart, so the users window holds ``claims`` of them in the
steady state; each is answered (its request "sent" and settled with the service's timing),
as a web handler's would be. Once the window is full, Redis's statistics are reset and
``measured`` more admissions are made: the Redis CPU per admission is ``EVALSHA``'s
``usec_per_call`` (``INFO commandstats``: time inside the server, not the round trip), and
the slowest call is read from ``SLOWLOG`` (threshold 0).
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

import redis.asyncio

from agora_chat_async import Rate, RateLimits, RedisLimiter, ServerTiming
from agora_chat_async.testing import RedisServer

#: The service's clock, far from ours: only differences matter.
SERVICE_EPOCH = 1.7e9


class SteppedTime:
    """A clock moved by the benchmark; a reservation's sleep moves it to its end."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)


async def cost_run(url: str, claims: int, measured: int = 1000) -> dict[str, Any]:
    """Fill a users window with *claims* single-recipient claims, then measure *measured*."""
    client = redis.asyncio.from_url(url)
    await client.flushall()
    clock = SteppedTime()
    per = 60.0
    limits = RateLimits(users=Rate(claims, per=per), send_calls=None, margin=0.005)
    limiter = RedisLimiter(
        client, rate_limits=limits, app_key="bench#cost", cold_start_wait=False, clock=clock
    )
    step = (per + 0.01) / claims  # the window (60.005 s) holds `claims`, none waits
    rtt = 0.002  # a request answered 2 ms after its start, counted 1 ms after it

    async def admit() -> None:
        permit = await limiter.acquire([("users", 1)])
        started = clock.t
        permit.sending()
        clock.t += rtt
        arrival = SERVICE_EPOCH + started + rtt / 2
        permit.settle(ServerTiming(arrival + 0.0005, 0.0005, sent=started))
        clock.t = started + step

    for _ in range(claims + claims // 10):  # a window and a tenth: full, and turning over
        await admit()
    await client.config_set("slowlog-log-slower-than", 0)
    await client.config_set("slowlog-max-len", 4 * measured)
    await client.slowlog_reset()
    await client.config_resetstat()
    for _ in range(measured):
        await admit()
    stats = await client.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha", {})
    slow = await client.slowlog_get(4 * measured)
    slowest = max((e["duration"] for e in slow if b"EVALSHA" in e["command"]), default=0)
    memory = await client.info("memory")
    await limiter.aclose()
    await client.aclose()
    return {
        "claims in the window": claims,
        "admissions measured": measured,
        "calls": evalsha.get("calls", 0),
        "us per admission": evalsha.get("usec_per_call", 0.0),
        "slowest call us": slowest,
        "used memory MB": memory["used_memory"] / 1e6,
    }


async def redis_cost_section(runs: int, sizes: tuple[int, ...] = (1000, 6000, 60000)) -> str:
    """Redis CPU per single-recipient admission at each window size, *runs* times each."""
    rows: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    with RedisServer() as server:
        for _ in range(runs):
            for size in sizes:
                row = await cost_run(server.url, size)
                print(row, file=sys.stderr)
                rows[size].append(row)
    lines = [
        "| claims in the window | Redis CPU per admission (us) min / median / max "
        "| slowest call (us) | used memory (MB) |",
        "| --- | --- | --- | --- |",
    ]
    for size, group in rows.items():
        costs = [r["us per admission"] for r in group]
        lines.append(
            f"| {size:,} | {min(costs):.1f} / {statistics.median(costs):.1f} / {max(costs):.1f} "
            f"| {max(r['slowest call us'] for r in group):,} "
            f"| {statistics.median(r['used memory MB'] for r in group):.1f} |"
        )
    return (
        f"### Redis CPU per single-recipient admission ({runs} runs each)\n\n"
        + "\n".join(lines)
        + "\n"
    )
