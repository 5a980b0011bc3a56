"""Benchmarks of the rate-limit engine against the bundled emulator over a real local socket.

    python benchmarks/run.py            # everything, about two minutes
    python benchmarks/run.py --quick    # shorter runs

Needs the ``bench`` extra (``pip install -e '.[bench]'``). Every server is an
emulator process on 127.0.0.1 counting quotas as a sliding window on a
time-scaled clock; every run is bounded in recipients and time. Results are
printed as Markdown tables (and written to ``benchmarks/results.md``).

Quota use is ``delivered / (limit x (elapsed / per + 1))``: a perfect limiter that
fills N windows starts the first at 0 and the last at (N - 1) x per.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
from _harness import AiolimiterBaseline, emulator_process, reset, stats

from agora_chat_async import (
    AgoraChatClient,
    Rate,
    RateLimited,
    RateLimits,
    RetryPolicy,
    SendResult,
    StaticToken,
    TextBody,
)
from agora_chat_async.testing import RedisServer, ScaledClock

BODY = TextBody(msg="Benchmark message: the same text for every recipient.")
#: target -> (time scale, windows, real seconds of jitter the client's margin absorbs).
#: The margin is scaled to emulated time: at 60x, 15 ms of real jitter is 0.9 s.
SCENARIOS = {"users": (20.0, 20, 0.050), "groups": (2.0, 40, 0.010), "rooms": (2.0, 40, 0.010)}
QUICK = {"users": (20.0, 6, 0.050), "groups": (2.0, 10, 0.010), "rooms": (2.0, 10, 0.010)}


def recipient_ids(target: str, count: int) -> Iterator[str]:
    prefix = {"users": "user", "groups": "group", "rooms": "room"}[target]
    return (f"{prefix}-{index:07d}" for index in range(count))


async def drain(results: AsyncIterator[SendResult]) -> tuple[int, int, int]:
    """Recipients delivered, failed and unknown over a fan-out's results."""
    delivered = failed = unknown = 0
    async for result in results:
        delivered += len(result.message_ids)
        failed += len(result.failed)
        unknown += len(result.unknown)
    return delivered, failed, unknown


def limit_refusals(record: dict[str, Any]) -> int:
    """The emulator's refusals for a rate limit (429/403), from its stats."""
    return sum(v for k, v in record["refused"].items() if k.startswith("limit:"))


async def quota_run(
    url: str, target: str, scale: float, windows: int, jitter: float, *, baseline: bool
) -> dict[str, Any]:
    """Fan one message out to `windows` windows' worth of recipients; measure use and loss."""
    limits = RateLimits(margin=jitter * scale)
    rate = limits.rate(target)  # type: ignore[arg-type]
    assert rate is not None
    count = rate.limit * windows
    clock = ScaledClock(scale)
    options: dict[str, Any] = {"clock": clock}
    if baseline:
        options["limiter"] = AiolimiterBaseline(limits, scale)
        options["retry"] = RetryPolicy(attempts=0, rate_limit_budget=0)
    else:
        options["rate_limits"] = limits
    await reset(url)
    async with AgoraChatClient(
        url, "test-org", "test-app", auth=StaticToken("test-token"), **options
    ) as client:
        start = clock.now()
        async with client.fan_out(recipient_ids(target, count), BODY, target=target) as results:  # type: ignore[arg-type]
            delivered, failed, unknown = await drain(results)
        elapsed = clock.now() - start
    record = await stats(url)
    refusals = limit_refusals(record)
    requests = sum(record["requests"].values())
    return {
        "target": target,
        "limiter": "aiolimiter baseline" if baseline else "agora-chat-async",
        "recipients": count,
        "delivered": delivered,
        "server deliveries": record["deliveries"],
        "duplicates": record["duplicates"],
        "lost": failed,
        "unknown": unknown,
        "requests": requests,
        "refusals (429/403)": refusals,
        "refusal rate": refusals / max(requests, 1),
        "quota use": delivered / (rate.limit * (elapsed / rate.per + 1)),
        "windows": elapsed / rate.per + 1,
        "peak units/window": record["peak_units"].get(target, 0),
    }


async def count_only_run(url: str) -> dict[str, Any]:
    """Batches of 600 user ids, counted but not measured: every request is over 5 KB."""
    await reset(url)
    ids = list(recipient_ids("users", 6000))
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(headers={"Authorization": "Bearer test-token"}) as http:
        for offset in range(0, len(ids), 600):
            body = {"to": ids[offset : offset + 600], "type": "txt", "body": {"msg": BODY.msg}}
            response = await http.post(f"{url}/test-org/test-app/messages/users", json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    record = await stats(url)
    return {
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "delivered": record["deliveries"],
        "recipients": len(ids),
    }


async def overhead_run(
    url: str, rounds: int = 40, sends: int = 250, concurrency: int = 8
) -> dict[str, Any]:
    """Requests per second through the full pipeline, divided by raw httpx doing the same.

    Both clients are opened and warmed once; then *rounds* pairs of short runs
    alternate between them (which goes first alternates too), and the ratio is the
    median of the pairs' ratios. On a shared machine the client core's speed changes
    over seconds (identical raw runs differ by up to 30%); a pair's two runs are a
    fraction of a second apart, so they see the same machine.
    """
    huge = Rate(10**9, per=1)
    limits = RateLimits(users=huge, groups=huge, rooms=huge, other=huge, send_calls=huge, margin=0)
    headers = {
        "Authorization": "Bearer test-token",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    endpoint = f"{url}/test-org/test-app/messages/users"

    async def timed(send: Any, first: int) -> float:
        counter = iter(range(first, first + sends))

        async def worker() -> None:
            for index in counter:
                await send(index)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        return sends / (time.perf_counter() - started)

    async with (
        AgoraChatClient(
            url, "test-org", "test-app", auth=StaticToken("test-token"), rate_limits=limits
        ) as client,
        httpx.AsyncClient(headers=headers) as http,
    ):

        async def pipeline(index: int) -> None:
            result = await client.send_user_message(f"u{index}", BODY)
            assert result.ok

        async def raw(index: int) -> None:
            payload = json.dumps(
                {"to": [f"u{index}"], "type": "txt", "body": {"msg": BODY.msg}},
                separators=(",", ":"),
            ).encode()
            response = await http.post(endpoint, content=payload)
            response.raise_for_status()
            response.json()

        await timed(pipeline, 0)  # warm both: connections, caches
        await timed(raw, 0)
        pairs = []
        for index in range(rounds):
            first = index * sends
            if index % 2:
                raw_rps = await timed(raw, first)
                pipeline_rps = await timed(pipeline, first)
            else:
                pipeline_rps = await timed(pipeline, first)
                raw_rps = await timed(raw, first)
            pairs.append((raw_rps, pipeline_rps))
    ratios = sorted(p / r for r, p in pairs)
    return {
        "sends": f"{rounds} x {sends} each",
        "concurrency": concurrency,
        "raw httpx req/s": statistics.median(r for r, _ in pairs),
        "pipeline req/s": statistics.median(p for _, p in pairs),
        "ratio": statistics.median(ratios),
        "ratio quartiles": f"{ratios[len(ratios) // 4]:.3f} - {ratios[3 * len(ratios) // 4]:.3f}",
    }


async def shared_quota_run(
    url: str,
    redis_url: str,
    mode: str,
    *,
    workers: int = 4,
    windows: int = 10,
    margin: float = 0.05,
) -> dict[str, Any]:
    """`workers` processes fan out to one app at once, sharing one quota (or not).

    The emulator runs at time scale 20 (a 60 s window lasts 3 s), so the workers limit
    `users=Rate(6000, per=3)` in real seconds: the RedisLimiter reads Redis's clock.
    """
    per = 3.0
    count = 6000 * windows // workers
    await reset(url)
    worker = Path(__file__).parent / "_shared_worker.py"
    processes = [
        await anyio.open_process(
            [
                sys.executable,
                str(worker),
                url,
                redis_url,
                f"{mode}{index}",
                str(count),
                str(per),
                str(margin),
                mode,
            ]
        )
        for index in range(workers)
    ]
    outputs: list[dict[str, Any]] = []
    for process in processes:
        assert process.stdout is not None
        async with process:
            raw = b"".join([chunk async for chunk in process.stdout])
        outputs.append(json.loads(raw))
    record = await stats(url)
    # From the first request sent (after any cold-start wait) to the last answer.
    elapsed = max(o["last"] for o in outputs) - min(o["first_send"] for o in outputs)
    delivered = sum(o["delivered"] for o in outputs)
    refusals = limit_refusals(record)
    requests = sum(record["requests"].values())
    return {
        "limiter": LIMITER_NAMES[mode],
        "workers": workers,
        "recipients": count * workers,
        "delivered": delivered,
        "lost": sum(o["failed"] for o in outputs),
        "unknown": sum(o["unknown"] for o in outputs),
        "duplicates": record["duplicates"],
        "requests": requests,
        "refusals (429/403)": refusals,
        "refusal rate": refusals / max(requests, 1),
        "quota use": delivered / (6000 * (elapsed / per + 1)),
        "Redis round trips per request": f"{sum(o['round_trips'] for o in outputs) / requests:.2f}",
    }


LIMITER_NAMES = {
    "redis": "RedisLimiter (shared)",
    "redis-cold": "RedisLimiter (defaults, cold Redis)",
    "local": "in-memory, one per process",
}


async def stricter_run(url: str, status: str) -> dict[str, Any]:
    """30,000 users against a server enforcing 4800 per minute where 6000 are configured.

    Time scale 10 (a minute lasts 6 s). Refusals are timed on the client's clock, so the
    ones after the first window (what adaptation failed to prevent) are counted apart.
    """
    scale, count = 10.0, 30_000
    limits = RateLimits(margin=0.05 * scale)
    clock = ScaledClock(scale)
    refused_at: list[float] = []

    def on_event(event: Any) -> None:
        if isinstance(event, RateLimited):
            refused_at.append(clock.now())

    await reset(url)
    async with AgoraChatClient(
        url,
        "test-org",
        "test-app",
        auth=StaticToken("test-token"),
        rate_limits=limits,
        clock=clock,
        on_event=on_event,
    ) as client:
        start = clock.now()
        async with client.fan_out(recipient_ids("users", count), BODY) as results:
            delivered, failed, unknown = await drain(results)
        elapsed = clock.now() - start
    record = await stats(url)
    requests = sum(record["requests"].values())
    late = sum(1 for t in refused_at if t - start > 60)
    return {
        "refusal": {"429": "429 reach_limit", "403": "403 reach limit"}[status],
        "recipients": count,
        "delivered": delivered,
        "server deliveries": record["deliveries"],
        "duplicates": record["duplicates"],
        "lost": failed,
        "unknown": unknown,
        "requests": requests,
        "refusals": len(refused_at),
        "after the first window": late,
        "share after the first window": late / max(requests, 1),
        "quota use (of 4800/min)": delivered / (4800 * (elapsed / 60 + 1)),
    }


async def mixed_run(url: str) -> dict[str, Any]:
    """A 36,000-user fan-out and, from the same client, one single send a second.

    Time scale 10 (a minute lasts 6 s). A single send's wait is measured around the
    call (so it includes the request itself), as a fraction of the 60 s window.
    """
    scale, count = 10.0, 36_000
    clock = ScaledClock(scale)
    await reset(url)
    waits: list[float] = []
    async with AgoraChatClient(
        url,
        "test-org",
        "test-app",
        auth=StaticToken("test-token"),
        rate_limits=RateLimits(margin=0.05 * scale),
        clock=clock,
    ) as client:

        async def web() -> None:
            for index in itertools.count():
                await anyio.sleep(1.0)
                started = clock.now()
                await client.send_user_message(f"web-{index}", BODY)
                waits.append((clock.now() - started) / 60)

        start = clock.now()
        async with anyio.create_task_group() as tg:
            tg.start_soon(web)
            async with client.fan_out(recipient_ids("users", count), BODY) as results:
                delivered, failed, unknown = await drain(results)
            elapsed = clock.now() - start
            tg.cancel_scope.cancel()
    record = await stats(url)
    waits.sort()
    return {
        "single sends": len(waits),
        "wait p95 (of the window)": waits[int(0.95 * (len(waits) - 1))],
        "wait max (of the window)": waits[-1],
        "fan-out delivered": delivered,
        "fan-out lost": failed + unknown,
        "fan-out quota use": delivered / (6000 * (elapsed / 60 + 1)),
        "refusals (429/403)": limit_refusals(record),
    }


STRICTER_COLUMNS = [
    "refusal",
    "recipients",
    "delivered",
    "server deliveries",
    "duplicates",
    "lost",
    "unknown",
    "requests",
    "refusals",
    "after the first window",
    "share after the first window",
    "quota use (of 4800/min)",
]


async def stricter_section(runs: int) -> str:
    """A server 20% stricter than configured, refusing with 429, then with 403."""
    rows = []
    for status in ("429", "403"):
        for _ in range(runs):
            with emulator_process(
                "--time-scale", "10", "--quota-factor", "0.8", "--quota-refusal", status
            ) as url:
                rows.append(await stricter_run(url, status))
            print(f"{status}: {rows[-1]}", file=sys.stderr, flush=True)
    return (
        "### Stricter server: 4800 users per minute enforced, 6000 configured (time scale 10)\n\n"
        + table(rows, STRICTER_COLUMNS)
        + "\n"
    )


async def cold_start_section(runs: int) -> str:
    """Four processes from a cold Redis, *runs* times: the spread of refusals and quota use.

    Each run gets a fresh redis-server and a fresh emulator (time scale 20, a strict
    sliding window), and the library's defaults: ``cold_start_wait=True``, margin 0.02 s.
    """
    rows = []
    for run in range(runs):
        with RedisServer() as redis_server, emulator_process("--time-scale", "20") as url:
            row = await shared_quota_run(
                url, redis_server.url, "redis-cold", windows=6, margin=0.02
            )
        rows.append(row)
        print(
            f"run {run + 1}: {row['refusals (429/403)']} refusals, "
            f"{row['quota use']:.1%} quota, {row['lost']} lost",
            file=sys.stderr,
            flush=True,
        )

    def spread(key: str, *, percent: bool = False) -> str:
        values = sorted(row[key] for row in rows)
        low, mid, high = values[0], statistics.median(values), values[-1]
        if percent:
            return f"{low:.1%} / {mid:.1%} / {high:.1%}"
        return f"{low:g} / {mid:g} / {high:g}"

    clean = sum(1 for row in rows if row["refusals (429/403)"] == 0)
    return (
        f"### Cold starts: 4 worker processes, one app key, {runs} runs\n\n"
        "Each run: a fresh redis-server and emulator (time scale 20, strict sliding window), "
        "36,000 user recipients, the library's defaults (`cold_start_wait=True`, margin "
        "0.02 s). Quota use counts from the first request sent, after the cold-start wait.\n\n"
        "| runs | runs with 0 refusals | refusals min / median / max "
        "| quota use min / median / max | lost, all runs | duplicates, all runs |\n"
        "|---|---|---|---|---|---|\n"
        f"| {runs} | {clean} | {spread('refusals (429/403)')} "
        f"| {spread('quota use', percent=True)} "
        f"| {sum(row['lost'] + row['unknown'] for row in rows)} "
        f"| {sum(row['duplicates'] for row in rows)} |\n"
    )


async def memory_run(url: str, recipients: int) -> dict[str, Any]:
    """Fan out to `recipients` generated users; peak Python heap growth of the client."""
    huge = Rate(10**9, per=1)
    limits = RateLimits(users=huge, groups=huge, rooms=huge, other=huge, send_calls=huge, margin=0)
    await reset(url)
    delivered = 0
    async with AgoraChatClient(
        url, "test-org", "test-app", auth=StaticToken("test-token"), rate_limits=limits
    ) as client:
        await client.send_user_message("warm-up", BODY)
        gc.collect()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        async with client.fan_out(
            recipient_ids("users", recipients), BODY, concurrency=8
        ) as results:
            async for result in results:
                delivered += len(result.message_ids)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "recipients": recipients,
        "delivered": delivered,
        "peak growth MB": (peak - baseline) / 1e6,
        "seconds": elapsed,
        "server deliveries": (await stats(url))["deliveries"],
    }


OVERHEAD_COLUMNS = [
    "sends",
    "concurrency",
    "raw httpx req/s",
    "pipeline req/s",
    "ratio",
    "ratio quartiles",
]
PERCENT = {
    "refusal rate",
    "quota use",
    "ratio",
    "share after the first window",
    "quota use (of 4800/min)",
    "wait p95 (of the window)",
    "wait max (of the window)",
    "fan-out quota use",
}


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(column: str, value: Any) -> str:
        if column in PERCENT:
            return f"{value:.1%}"
        if isinstance(value, float):
            return f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


#: What every quota table shows, between its first columns and its last.
OUTCOME_COLUMNS = [
    "recipients",
    "delivered",
    "lost",
    "unknown",
    "duplicates",
    "requests",
    "refusals (429/403)",
    "refusal rate",
    "quota use",
]
SHARED_COLUMNS = ["limiter", "workers", *OUTCOME_COLUMNS, "Redis round trips per request"]


async def shared_quota_section(quick: bool) -> str:
    """Four worker processes, one app key: one RedisLimiter, then one limiter each."""
    windows = 4 if quick else 10
    with RedisServer() as redis_server:
        rows = []
        for mode in ("redis", "local"):
            with emulator_process("--time-scale", "20") as url:
                rows.append(await shared_quota_run(url, redis_server.url, mode, windows=windows))
    return "### Shared quota: 4 worker processes, one app key (users, time scale 20)\n\n" + table(
        rows, SHARED_COLUMNS
    )


async def main(quick: bool, only: str | None = None, runs: int = 20) -> str:
    if only == "shared":
        return await shared_quota_section(quick) + "\n"
    if only == "cold-start":
        return await cold_start_section(runs)
    if only == "stricter":
        return await stricter_section(runs)
    if only == "mixed":
        rows = []
        for _ in range(runs):
            with emulator_process("--time-scale", "10") as url:
                rows.append(await mixed_run(url))
            print(rows[-1], file=sys.stderr, flush=True)
        return "### Mixed: one fan-out and one single send a second, one process\n\n" + table(
            rows, list(rows[0])
        )
    scenarios = QUICK if quick else SCENARIOS
    if only is not None:
        scenarios = {only: scenarios[only]}
    out: list[str] = []
    columns = ["target", "limiter", *OUTCOME_COLUMNS, "windows", "peak units/window"]
    for factor, title in (
        (1.0, "server enforcing the documented quota"),
        (0.8, "server enforcing 20% less than configured"),
    ):
        rows = []
        for target, (scale, windows, jitter) in scenarios.items():
            with emulator_process("--time-scale", str(scale), "--quota-factor", str(factor)) as url:
                rows.append(await quota_run(url, target, scale, windows, jitter, baseline=False))
                rows.append(await quota_run(url, target, scale, windows, jitter, baseline=True))
        out.append(f"### Quota use, {title}\n\n" + table(rows, columns))
    if only is not None:
        return "\n\n".join(out) + "\n"
    with emulator_process("--time-scale", "60") as url:
        count_only = await count_only_run(url)
    out.append(
        "### Count-only batches (600 ids a request)\n\n"
        f"{count_only['requests']} requests of 600 user ids: statuses {count_only['statuses']}, "
        f"{count_only['delivered']} of {count_only['recipients']} delivered."
    )
    with emulator_process("--unlimited") as url:
        overhead = await overhead_run(url)
    out.append(
        "### Client overhead (unlimited server)\n\n"
        + table(
            [overhead],
            OVERHEAD_COLUMNS,
        )
    )
    with emulator_process("--unlimited", "--no-record") as url:
        memory = await memory_run(url, 100_000 if quick else 1_000_000)
    out.append(
        "### Fan-out memory\n\n"
        + table(
            [memory], ["recipients", "delivered", "server deliveries", "peak growth MB", "seconds"]
        )
    )
    out.append(await shared_quota_section(quick))
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument(
        "--only",
        choices=(*SCENARIOS, "shared", "cold-start", "stricter", "mixed"),
        help="one quota scenario, the shared quota, or repeated cold starts",
    )
    parser.add_argument(
        "--runs", type=int, default=20, help="cold starts to repeat (with --only cold-start)"
    )
    args = parser.parse_args()
    report = anyio.run(main, args.quick, args.only, args.runs)
    print(report)
    if args.only is None:
        (Path(__file__).parent / "results.md").write_text(report)
