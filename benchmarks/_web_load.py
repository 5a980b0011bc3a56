"""Web processes sending single messages at the documented quota through one Redis.

    python benchmarks/run.py --only web --runs 5

Four processes (``_web_load.py URL REDIS_URL SECONDS TASKS``, started by
:func:`web_load_section`), each with eight tasks that call ``send_user_message`` to one user
back to back for ``SECONDS``, share the documented quota (6,000 users a minute, 100 send
calls a second) through one ``RedisLimiter`` on a throwaway ``redis-server``, against an
emulator process in real time counting a strict sliding window. What the emulator admitted
is measured: send calls a second from its first admission to its last (the 100/s call
limit binds, and after the first minute the 6,000-a-minute users window too), and its
refusals.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import redis.asyncio

from agora_chat_async import AgoraChatClient, RedisLimiter, StaticToken, TextBody
from agora_chat_async.testing import RedisServer

PROCESSES = 4
TASKS = 8


async def worker(url: str, redis_url: str, seconds: float, tasks: int) -> dict[str, Any]:
    """One web process: *tasks* handlers sending single messages until *seconds* pass."""
    store = redis.asyncio.from_url(redis_url)
    limiter = RedisLimiter(store, cold_start_wait=False)
    sent = failed = 0
    deadline = time.monotonic() + seconds
    async with AgoraChatClient(
        url, "test-org", "test-app", auth=StaticToken("test-token"), limiter=limiter
    ) as client:

        async def handler(name: str) -> None:
            nonlocal sent, failed
            index = 0
            while time.monotonic() < deadline:
                result = await client.send_user_message(f"{name}-{index}", TextBody(msg="hi"))
                sent += 1
                failed += len(result.failed) + len(result.unknown)
                index += 1

        async with anyio.create_task_group() as tg:
            for task in range(tasks):
                tg.start_soon(handler, f"web-{task}")
    await store.aclose()
    return {"sent": sent, "failed": failed, "round_trips": limiter._round_trips}


async def web_load_run(url: str, redis_url: str, seconds: float) -> dict[str, Any]:
    """Four web processes for *seconds*; what the emulator admitted."""
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(f"{url}/_emulator/reset")
    here = Path(__file__)
    results = []
    async with anyio.create_task_group() as tg:

        async def one() -> None:
            command = [sys.executable, str(here), url, redis_url, str(seconds), str(TASKS)]
            done = await anyio.run_process(command, check=True)
            results.append(json.loads(done.stdout))

        for _ in range(PROCESSES):
            tg.start_soon(one)
    async with httpx.AsyncClient(timeout=60) as http:
        admissions = (await http.get(f"{url}/_emulator/admissions")).json()["admissions"]
        record = (await http.get(f"{url}/_emulator/stats")).json()
    calls = sorted(at for name, at, _ in admissions if name == "send_calls")
    span = (calls[-1] - calls[0]) / 1000
    refusals = sum(v for k, v in record["refused"].items() if k.startswith("limit:"))
    return {
        "sent": sum(r["sent"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "admitted": len(calls),
        "calls/s": (len(calls) - 1) / span if span else 0.0,
        "refusals": refusals,
        "Redis round trips per send": sum(r["round_trips"] for r in results) / max(len(calls), 1),
    }


async def web_load_section(runs: int, seconds: float = 70.0) -> str:
    """*runs* runs of four web processes for *seconds* each, each against a fresh emulator
    and redis-server."""
    from _harness import emulator_process

    rows = []
    for _ in range(runs):
        with RedisServer() as server, emulator_process() as url:
            rows.append(await web_load_run(url, server.url, seconds))
        print(rows[-1], file=sys.stderr, flush=True)
    rates = [r["calls/s"] for r in rows]
    trips = [r["Redis round trips per send"] for r in rows]
    return (
        f"### Four web processes of {TASKS} tasks, single sends for {seconds:g} s, one Redis "
        f"({runs} runs)\n\n"
        "send calls a second the emulator admitted, of the 100/s call limit: "
        f"{min(rates):.1f} / {statistics.median(rates):.1f} / {max(rates):.1f} "
        f"(min / median / max); refusals {[r['refusals'] for r in rows]}; failed "
        f"{[r['failed'] for r in rows]}; Redis round trips a send "
        f"{min(trips):.2f} / {statistics.median(trips):.2f} / {max(trips):.2f}\n"
    )


if __name__ == "__main__":  # one web process: URL REDIS_URL SECONDS TASKS
    url, redis_url, seconds, tasks = sys.argv[1:5]
    print(json.dumps(anyio.run(worker, url, redis_url, float(seconds), int(tasks))))
