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
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.streams.buffered
import attrs
import httpx
from _harness import (
    AiolimiterBaseline,
    cpu_seconds,
    emulator_process,
    emulator_with_pid,
    reset,
    stats,
)
from _loop_steps import loop_step_rows
from _network import cli_import_section, network_section
from _redis_cost import redis_cost_section
from _timeline import delivery_times, sustained_use
from _web_load import web_load_section

from agora_chat_async import (
    AgoraChatClient,
    EventHook,
    FileProgressStore,
    JobProgress,
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


def client_options(limits: RateLimits, clock: ScaledClock, *, baseline: bool) -> dict[str, Any]:
    """The client's options: the library's limiter over *limits*, or the aiolimiter
    baseline sized like them, without retries."""
    if baseline:
        return {
            "clock": clock,
            "limiter": AiolimiterBaseline(limits, clock.scale),
            "retry": RetryPolicy(attempts=0, rate_limit_budget=0),
        }
    return {"clock": clock, "rate_limits": limits}


async def quota_run(
    url: str,
    target: str,
    scale: float,
    windows: int,
    jitter: float,
    *,
    baseline: bool,
    headroom: float | None = None,
) -> dict[str, Any]:
    """Fan one message out to `windows` windows' worth of recipients; measure use and loss.

    *headroom*: the client's ``bulk_headroom``, if not the default.
    """
    limits = RateLimits(margin=jitter * scale)
    if headroom is not None:
        limits = attrs.evolve(limits, bulk_headroom=headroom)
    rate = limits.rate(target)  # type: ignore[arg-type]
    assert rate is not None
    count = rate.limit * windows
    clock = ScaledClock(scale)
    options = client_options(limits, clock, baseline=baseline)
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
    times = (await delivery_times(url)).get(target.rstrip("s"), [])
    name = "aiolimiter baseline" if baseline else "agora-chat-async"
    if headroom is not None:
        name += f" (bulk_headroom={headroom:g})"
    return {
        "target": target,
        "limiter": name,
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
        "sustained use": sustained_use(times, rate.limit, rate.per) if times else 0.0,
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
    headroom: float | None = None,
    scaled: bool = False,
) -> dict[str, Any]:
    """`workers` processes fan out to one app at once, sharing one quota (or not).

    *headroom*: the workers' ``bulk_headroom``, if not the default. *scaled*: the workers'
    RedisLimiters read a ``ScaledClock(20)``, the emulator's rate, instead of Redis's
    ``TIME`` (``_shared_worker.py``): every clock of the run then runs at one rate.

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
                *([] if headroom is None else [str(headroom)]),
            ],
            env={**os.environ, "AGORA_BENCH_TIME_SCALE": "20" if scaled else ""},
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
    timeline = await delivery_times(url)
    times = sorted(t for kind in timeline.values() for t in kind)
    # From the first request sent (after any cold-start wait) to the last answer.
    elapsed = max(o["last"] for o in outputs) - min(o["first_send"] for o in outputs)
    delivered = sum(o["delivered"] for o in outputs)
    refusals = limit_refusals(record)
    requests = sum(record["requests"].values())
    name = LIMITER_NAMES[mode]
    if headroom is not None:
        name += f" (bulk_headroom={headroom:g})"
    return {
        "limiter": name,
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
        "sustained use": sustained_use(times, 6000, 60) if times else 0.0,
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
    times = (await delivery_times(url)).get("user", [])
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
        "sustained use (of 4800/min)": sustained_use(times, 4800, 60) if times else 0.0,
    }


#: The mixed runs: time scale 10 (the 60 s window lasts 6 s), 36,000 users (six windows).
MIXED_SCALE, MIXED_COUNT = 10.0, 36_000


def mixed_outcome(
    timeline: dict[str, list[float]], waits: list[float], failed: int, record: dict[str, Any]
) -> dict[str, Any]:
    """The mixed-run row: single sends' waits (shares of the window), the fan-out's quota use."""
    bulk = timeline.get("user", [])
    waits = sorted(waits)
    elapsed = bulk[-1] - bulk[0] if bulk else 0.0
    return {
        "single sends": len(waits),
        "wait p95 (of the window)": waits[int(0.95 * (len(waits) - 1))] if waits else 0.0,
        "wait max (of the window)": waits[-1] if waits else 0.0,
        "fan-out delivered": len(bulk),
        "lost": MIXED_COUNT - len(bulk) + failed,
        "duplicates": record["duplicates"],
        "refusals (429/403)": limit_refusals(record),
        "fan-out sustained use": sustained_use(bulk, 6000, 60) if bulk else 0.0,
        "fan-out use (whole windows)": len(bulk) / (6000 * (elapsed / 60 + 1)),
        "Redis round trips per request": "-",
        "web round trips per send": "-",
    }


async def mixed_run(url: str, *, baseline: bool = False) -> tuple[dict[str, Any], Any]:
    """A 36,000-user fan-out and, from the same client, one single send a second.

    A single send's wait is measured around the call (so it includes the request
    itself), as a share of the 60 s window. Returns the row and what the picture needs.
    """
    clock = ScaledClock(MIXED_SCALE)
    options = client_options(RateLimits(margin=0.05 * MIXED_SCALE), clock, baseline=baseline)
    await reset(url)
    waits: list[tuple[float, float]] = []
    failed = 0
    async with AgoraChatClient(
        url, "test-org", "test-app", auth=StaticToken("test-token"), **options
    ) as client:
        start = clock.now()

        async def web() -> None:
            nonlocal failed
            for index in itertools.count():
                await anyio.sleep(1.0)
                started = clock.now()
                result = await client.send_user_message(f"web-{index}", BODY)
                waits.append((started - start, (clock.now() - started) / 60))
                failed += len(result.failed) + len(result.unknown)

        async with anyio.create_task_group() as tg:
            tg.start_soon(web)
            async with client.fan_out(recipient_ids("users", MIXED_COUNT), BODY) as results:
                await drain(results)
            tg.cancel_scope.cancel()
    timeline = await delivery_times(url)
    row = mixed_outcome(timeline, [w for _, w in waits], failed, await stats(url))
    return {
        "limiter": "aiolimiter baseline" if baseline else "agora-chat-async",
        "processes": 1,
        **row,
    }, (timeline, waits)


async def mixed_redis_run(url: str, redis_url: str) -> tuple[dict[str, Any], Any]:
    """The same, as two processes on one RedisLimiter: a fan-out worker and a web process.

    Both limit ``users=Rate(6000, per=6)`` in real seconds (the limiter reads Redis's
    clock; the emulator runs ten times faster). The web process starts first, as a web
    backend that is already serving when a campaign begins.
    """
    per, margin = 60 / MIXED_SCALE, 0.05
    await reset(url)
    here = Path(__file__).parent
    web = await anyio.open_process(
        [sys.executable, str(here / "_web_worker.py"), url, redis_url, str(per), str(margin)]
    )
    assert web.stdin is not None
    assert web.stdout is not None
    async with web:
        buffer = anyio.streams.buffered.BufferedByteReceiveStream(web.stdout)
        assert await buffer.receive_until(b"\n", 100) == b"ready"
        worker = await anyio.open_process(
            [
                sys.executable,
                str(here / "_shared_worker.py"),
                url,
                redis_url,
                "user",
                str(MIXED_COUNT),
                str(per),
                str(margin),
                "redis",
            ]
        )
        assert worker.stdout is not None
        async with worker:
            fan_out = json.loads(b"".join([chunk async for chunk in worker.stdout]))
        await web.stdin.aclose()
        raw = b"".join([chunk async for chunk in buffer])
    web_out = json.loads(raw)
    timeline = await delivery_times(url)
    row = mixed_outcome(
        timeline,
        [w / per for w in web_out["waits"]],
        web_out["failed"] + fan_out["failed"] + fan_out["unknown"],
        await stats(url),
    )
    # The web process sends one a second from its start; the picture's clock starts at
    # the fan-out's first request.
    offset = web_out["first"] - fan_out["first_send"]
    waits = [
        ((offset + 1.0 * (i + 1)) * MIXED_SCALE, w / per) for i, w in enumerate(web_out["waits"])
    ]
    record = await stats(url)
    requests = sum(record["requests"].values())
    row["Redis round trips per request"] = (
        f"{(web_out['round_trips'] + fan_out['round_trips']) / max(requests, 1):.2f}"
    )
    row["web round trips per send"] = (
        f"{web_out['round_trips'] / max(len(web_out['waits']), 1):.2f}"
    )
    return {"limiter": "RedisLimiter (shared)", "processes": 2, **row}, (timeline, waits)


MIXED_COLUMNS = [
    "limiter",
    "processes",
    "single sends",
    "wait p95 (of the window)",
    "wait max (of the window)",
    "fan-out delivered",
    "lost",
    "duplicates",
    "refusals (429/403)",
    "fan-out sustained use",
    "fan-out use (whole windows)",
    "Redis round trips per request",
    "web round trips per send",
]


async def mixed_section(runs: int, picture: Path | None) -> str:
    """*runs* mixed runs in one process, then through Redis, then the baseline once."""
    rows: list[dict[str, Any]] = []
    panels: dict[str, Any] = {}
    for _ in range(runs):
        with emulator_process("--time-scale", str(MIXED_SCALE)) as url:
            row, panels["one process"] = await mixed_run(url)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    for _ in range(runs):
        with (
            RedisServer() as redis_server,
            emulator_process("--time-scale", str(MIXED_SCALE)) as url,
        ):
            row, panels["two processes"] = await mixed_redis_run(url, redis_server.url)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    with emulator_process("--time-scale", str(MIXED_SCALE)) as url:
        row, panels["baseline"] = await mixed_run(url, baseline=True)
    rows.append(row)
    print(row, file=sys.stderr, flush=True)
    if picture is not None:
        from _plot import plot_windows

        titles = {
            "one process": "agora-chat-async, one process",
            "two processes": "agora-chat-async, two processes (RedisLimiter)",
            "baseline": "aiolimiter baseline (no priority, no retries)",
        }
        plot_windows(
            [(titles[key], *panels[key]) for key in titles],
            limit=6000,
            per=60,
            path=picture,
        )
    return (
        "### Mixed: a 36,000-user fan-out and one single send a second, one app key\n\n"
        + spread_table(rows, MIXED_COLUMNS, ["limiter", "processes"])
        + "\n"
    )


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
    "sustained use (of 4800/min)",
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
    sliding window), and the library's defaults: ``cold_start_wait=True``, margin 0.02 s;
    then as many runs of workers that only send bulk (``bulk_headroom=0``). The workers'
    limiters read a ``ScaledClock(20)`` (``shared_quota_run(scaled=True)``), so that the
    service's timestamps and the limiter's clock run at one rate, as they do in production
    (benchmarks/README.md, "Cold starts: every clock at one rate").
    """
    rows = []
    for headroom in (None, 0.0):
        for run in range(runs):
            with RedisServer() as redis_server, emulator_process("--time-scale", "20") as url:
                row = await shared_quota_run(
                    url,
                    redis_server.url,
                    "redis-cold",
                    windows=6,
                    margin=0.02,
                    headroom=headroom,
                    scaled=True,
                )
            rows.append(row)
            print(
                f"run {run + 1}: {row['refusals (429/403)']} refusals, "
                f"{row['quota use']:.1%} quota, {row['sustained use']:.1%} sustained, "
                f"{row['lost']} lost",
                file=sys.stderr,
                flush=True,
            )
    return (
        f"### Cold starts: 4 worker processes, one app key, {runs} runs each\n\n"
        "Each run: a fresh redis-server and emulator (time scale 20, strict sliding window), "
        "36,000 user recipients, the library's defaults (`cold_start_wait=True`, margin "
        "0.02 s), every clock at the emulator's rate. Quota use counts from the first "
        "request sent, after the cold-start wait.\n\n"
        + spread_table(rows, COLD_START_COLUMNS, ["limiter"])
        + "\n"
    )


COLD_START_COLUMNS = [
    "limiter",
    "delivered",
    "lost",
    "unknown",
    "duplicates",
    "refusals (429/403)",
    "quota use",
    "sustained use",
]


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


class _MeasuredStore(FileProgressStore):
    """A file store that remembers the largest file it wrote."""

    largest = 0
    saves = 0

    async def save(self, job: str, progress: JobProgress) -> None:
        await super().save(job, progress)
        self.saves += 1
        self.largest = max(self.largest, self.path.stat().st_size)


async def durable_run(url: str, recipients: int, *, durable: bool) -> dict[str, Any]:
    """*recipients* generated users through ``durable_fan_out`` (a file store) or ``fan_out``
    against an unlimited server: the client's CPU per request, and the store's size."""
    huge = Rate(10**9, per=1)
    limits = RateLimits(users=huge, groups=huge, rooms=huge, other=huge, send_calls=huge, margin=0)
    ids = list(recipient_ids("users", recipients))
    await reset(url)
    with tempfile.TemporaryDirectory() as directory:
        store = _MeasuredStore(Path(directory) / "job.progress")
        async with AgoraChatClient(
            url, "test-org", "test-app", auth=StaticToken("test-token"), rate_limits=limits
        ) as client:
            started, cpu = time.perf_counter(), time.process_time()
            if durable:
                fan_out: Any = client.durable_fan_out(
                    ids, BODY, job="bench", store=store, concurrency=8
                )
            else:
                fan_out = client.fan_out(ids, BODY, concurrency=8)
            async with fan_out as results:
                delivered, _, _ = await drain(results)
            cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
        final = store.path.stat().st_size if durable else 0
    requests = sum((await stats(url))["requests"].values())
    return {
        "fan-out": "durable_fan_out (file store)" if durable else "fan_out",
        "recipients": recipients,
        "delivered": delivered,
        "requests": requests,
        "client CPU per request (us)": cpu / max(requests, 1) * 1e6,
        "seconds": elapsed,
        "store saves": store.saves,
        "largest store (bytes)": store.largest,
        "final store (bytes)": final,
    }


async def durable_section(runs: int) -> str:
    """The store's size for a 1,000,000-recipient job, and what its writes cost a request."""
    rows = []
    with emulator_process("--unlimited", "--no-record") as url:
        rows.append(await durable_run(url, 1_000_000, durable=True))
        print(rows[-1], file=sys.stderr, flush=True)
        for _ in range(runs):
            for durable in (False, True):
                rows.append(await durable_run(url, 100_000, durable=durable))
                print(rows[-1], file=sys.stderr, flush=True)
    columns = [
        "fan-out",
        "recipients",
        "delivered",
        "requests",
        "client CPU per request (us)",
        "seconds",
        "store saves",
        "largest store (bytes)",
        "final store (bytes)",
    ]
    return (
        "### Durable fan-out: the store's size, and the cost of its writes\n\n"
        + spread_table(rows, columns, ["fan-out", "recipients"])
        + "\n"
    )


async def overhead_section() -> str:
    """The client's overhead over raw httpx, alone (the full run has it too)."""
    with emulator_process("--unlimited") as url:
        overhead = await overhead_run(url)
    return "### Client overhead (unlimited server)\n\n" + table([overhead], OVERHEAD_COLUMNS)


async def cpu_run(
    url: str, pid: int, sends: int = 3000, on_event: EventHook | None = None
) -> dict[str, Any]:
    """Client and emulator CPU per request: *sends* single-recipient sends, 8 at a time,
    through the whole pipeline, against an unlimited server (``--unlimited``); with
    *on_event*, that hook records every event."""
    huge = Rate(10**9, per=1)
    limits = RateLimits(users=huge, groups=huge, rooms=huge, other=huge, send_calls=huge, margin=0)
    await reset(url)
    async with AgoraChatClient(
        url,
        "test-org",
        "test-app",
        auth=StaticToken("test-token"),
        rate_limits=limits,
        on_event=on_event,
    ) as client:
        await client.send_user_message("warm-up", BODY)
        client_before, server_before = time.process_time(), cpu_seconds(pid)
        per_task = sends // 8

        async def worker(task: int) -> None:
            for index in range(per_task):
                await client.send_user_message(f"cpu-{task}-{index}", BODY)

        async with anyio.create_task_group() as tg:
            for task in range(8):
                tg.start_soon(worker, task)
        client_cpu = time.process_time() - client_before
        server_cpu = cpu_seconds(pid) - server_before
    requests = per_task * 8
    return {
        "requests": requests,
        "client CPU per request (us)": client_cpu / requests * 1e6,
        "emulator CPU per request (us)": server_cpu / requests * 1e6,
    }


async def cpu_section(runs: int) -> str:
    """*runs* repetitions of :func:`cpu_run`, each against a fresh emulator process; with
    the OpenTelemetry SDK installed, alternating with runs whose client records every
    event through ``ClientMetrics`` (an SDK ``MeterProvider`` with an in-memory reader)."""
    hooks: dict[str, Callable[[], EventHook | None]] = {"none": lambda: None}
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from agora_chat_async.otel import ClientMetrics
    except ImportError:
        pass  # the extra is not installed: the plain runs only
    else:
        hooks["ClientMetrics"] = lambda: ClientMetrics(
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()])
        )
    rows = []
    for _ in range(runs):
        for name, hook in hooks.items():
            with emulator_with_pid("--unlimited") as (url, pid):
                row = await cpu_run(url, pid, on_event=hook())
            row["on_event"] = name
            rows.append(row)
            print(rows[-1], file=sys.stderr, flush=True)
    for row in rows:
        row["server"] = "unlimited emulator"
    return (
        "### CPU per request (single-recipient sends, 8 at a time, unlimited server)\n\n"
        + spread_table(
            rows,
            [
                "server",
                "on_event",
                "requests",
                "client CPU per request (us)",
                "emulator CPU per request (us)",
            ],
            ["server", "on_event"],
        )
        + "\n"
    )


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
    "sustained use (of 4800/min)",
    "wait p95 (of the window)",
    "wait max (of the window)",
    "fan-out sustained use",
    "fan-out use (whole windows)",
    "sustained use",
}


def table_cell(column: str, value: Any) -> str:
    """One value as the tables print it: a share as a percentage, numbers with separators."""
    if column.startswith("wait "):
        return f"{value:.2%}"
    if column in PERCENT:
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(table_cell(c, row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def spread_table(rows: list[dict[str, Any]], columns: list[str], keys: list[str]) -> str:
    """One line per group of rows alike in *keys*: each number as min / median / max."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    lines = ["| runs | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for group in groups.values():
        cells = []
        for column in columns:
            values = [row[column] for row in group]
            if column in keys or len(group) == 1:
                cells.append(table_cell(column, values[0]))
            else:
                values.sort()
                textual = isinstance(values[0], str)
                middle = statistics.median_low(values) if textual else statistics.median(values)
                low, mid, high = values[0], middle, values[-1]
                cells.append(" / ".join(table_cell(column, v) for v in (low, mid, high)))
        lines.append(f"| {len(group)} | " + " | ".join(cells) + " |")
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
SHARED_COLUMNS = [
    "limiter",
    "workers",
    *OUTCOME_COLUMNS,
    "sustained use",
    "Redis round trips per request",
]


async def shared_quota_section(quick: bool) -> str:
    """Four worker processes, one app key: one RedisLimiter, then one limiter each."""
    windows = 4 if quick else 10
    rows = []
    for mode, headroom in (("redis", None), ("redis", 0.0), ("local", None)):
        # A fresh Redis for each run: one run's last window must not count against the next.
        with RedisServer() as redis_server, emulator_process("--time-scale", "20") as url:
            rows.append(
                await shared_quota_run(
                    url, redis_server.url, mode, windows=windows, headroom=headroom
                )
            )
    return "### Shared quota: 4 worker processes, one app key (users, time scale 20)\n\n" + table(
        rows, SHARED_COLUMNS
    )


async def loop_steps_section(runs: int) -> str:
    """How long the library makes another task on the event loop wait, per bulk path."""
    with emulator_process("--unlimited", "--no-record") as url:
        rows = await loop_step_rows(url, runs)
    columns = ["scenario", "longest wait (ms)", "99th percentile (ms)", "wake-ups"]
    return (
        "### The event loop: how long another task waits (a 1 ms watcher's lag)\n\n"
        + spread_table(rows, columns, ["scenario"])
        + "\n"
    )


async def network_report(runs: int, picture: Path | None) -> str:
    """The per-second quotas at 0-300 ms round trips; the picture of rooms against them."""
    report, rows = await network_section(runs)
    if picture is not None and picture.name == "network-use.png":
        from _plot import network_picture

        network_picture(rows, picture)
    return report


async def main(
    quick: bool, only: str | None = None, runs: int = 20, picture: Path | None = None
) -> str:
    sections = {
        "shared": lambda: shared_quota_section(quick),
        "cold-start": lambda: cold_start_section(runs),
        "stricter": lambda: stricter_section(runs),
        "mixed": lambda: mixed_section(runs, picture),
        "cpu": lambda: cpu_section(runs),
        "overhead": overhead_section,
        "durable": lambda: durable_section(runs),
        "network": lambda: network_report(runs, picture),
        "cli-import": lambda: cli_import_section(runs),
        "redis-cost": lambda: redis_cost_section(runs),
        "web": lambda: web_load_section(runs),
        "loop-steps": lambda: loop_steps_section(runs),
    }
    if only in sections:
        return (await sections[only]()).rstrip("\n") + "\n"
    scenarios = QUICK if quick else SCENARIOS
    if only is not None:
        scenarios = {only: scenarios[only]}
    out: list[str] = []
    columns = [
        "target",
        "limiter",
        *OUTCOME_COLUMNS,
        "sustained use",
        "windows",
        "peak units/window",
    ]
    for factor, title in (
        (1.0, "server enforcing the documented quota"),
        (0.8, "server enforcing 20% less than configured"),
    ):
        rows = []
        for target, (scale, windows, jitter) in scenarios.items():
            with emulator_process("--time-scale", str(scale), "--quota-factor", str(factor)) as url:
                rows.append(await quota_run(url, target, scale, windows, jitter, baseline=False))
                if target == "users" and factor == 1.0:  # a process that only sends bulk
                    rows.append(
                        await quota_run(
                            url, target, scale, windows, jitter, baseline=False, headroom=0.0
                        )
                    )
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
        choices=(
            *SCENARIOS,
            "shared",
            "cold-start",
            "stricter",
            "mixed",
            "cpu",
            "overhead",
            "durable",
            "network",
            "cli-import",
            "redis-cost",
            "web",
            "loop-steps",
        ),
        help="one quota scenario, the shared quota, or repeated cold starts",
    )
    parser.add_argument(
        "--runs", type=int, default=20, help="runs to repeat (--only cold-start, stricter, mixed)"
    )
    parser.add_argument(
        "--picture",
        type=Path,
        default=Path(__file__).parent.parent / "docs" / "img" / "mixed-windows.png",
        help="where the mixed runs' picture goes (with --only mixed; needs matplotlib)",
    )
    args = parser.parse_args()
    report = anyio.run(main, args.quick, args.only, args.runs, args.picture)
    print(report)
    if args.only is None:
        (Path(__file__).parent / "results.md").write_text(report)
