"""The per-second quotas over a network: round trips of 0 to 300 ms with 10% jitter each way.

Every server is an emulator process on 127.0.0.1 in real time (``--time-scale 1``) with a
``--round-trip`` network: half the round trip (plus up to 10% of it, drawn uniformly) before
a request is counted, as long again before its answer leaves, one more round trip for a new
connection's handshake. What is measured is what the server counted
(``GET /_emulator/admissions``): the span from the first unit it counted to the last, against
the shortest span any client could achieve for the same units (the first window's units at
once, each next window's a whole ``per`` later: ``(ceil(units / limit) - 1) x per``).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
from _harness import AiolimiterBaseline, emulator_process, reset, stats

from agora_chat_async import (
    AgoraChatClient,
    Claim,
    Limiter,
    Permit,
    Priority,
    RateLimits,
    RetryPolicy,
    ServerTiming,
    SlidingWindowLimiter,
    StaticToken,
    TextBody,
)

BODY = TextBody(msg="Benchmark message over a network.")
ROUND_TRIPS = (0.0, 0.02, 0.1, 0.3)
#: target -> (limit name, units sent): 20 windows of groups and rooms, 1,550 imports.
WORKLOADS = {
    "groups": ("groups", 400),
    "rooms": ("rooms", 2000),
    "import": ("other", 1550),
}


class WholeRoundTrip(Limiter):
    """The library's limiter as it was before the service's clock was read: every answer
    charges its claims the whole round trip (the timing is dropped)."""

    def __init__(self, rate_limits: RateLimits) -> None:
        self._inner = SlidingWindowLimiter(rate_limits)

    @property
    def rate_limits(self) -> RateLimits:
        return self._inner.rate_limits

    async def acquire(
        self,
        claims: Sequence[Claim],
        *,
        min_units: int | None = None,
        priority: Priority = "interactive",
    ) -> Permit:
        permit = await self._inner.acquire(claims, min_units=min_units, priority=priority)

        def settle(timing: ServerTiming | None) -> None:
            permit.settle(None)

        return Permit(
            permit.refund,
            units=permit.units,
            settle=settle,
            binding=permit.binding,
            sending=permit.sending,
        )

    def penalize(self, claims: Sequence[Claim]) -> None:
        self._inner.penalize(claims)


def use_of(admissions: list[list[Any]], limit_name: str, limit: int, per: float) -> float:
    """The shortest span any client could achieve for the counted units, over the span."""
    rows = [(at, units) for name, at, units in admissions if name == limit_name]
    units = sum(u for _, u in rows)
    shortest = (math.ceil(units / limit) - 1) * per
    span = (max(at for at, _ in rows) - min(at for at, _ in rows)) / 1000
    return shortest / span if span > 0 else 1.0


def client_for(url: str, variant: str) -> AgoraChatClient:
    """A client of *variant*. Its fan-outs are a worker's that only sends bulk
    (``bulk_headroom=0``) unless the variant says ``default headroom``."""
    limits = RateLimits(bulk_headroom=0.0)
    if variant.endswith("(default headroom)"):
        limits = RateLimits()
    options: dict[str, Any] = {"rate_limits": limits}
    if variant == "whole round trip":
        options = {"limiter": WholeRoundTrip(limits)}
    elif variant == "aiolimiter":
        options = {
            "limiter": AiolimiterBaseline(limits, 1.0),
            "retry": RetryPolicy(attempts=0, rate_limit_budget=0),
        }
    return AgoraChatClient(url, "test-org", "test-app", auth=StaticToken("test-token"), **options)


async def network_run(url: str, workload: str, variant: str, rtt: float) -> dict[str, Any]:
    """One workload through one client variant; what the server counted."""
    limit_name, units = WORKLOADS[workload]
    await reset(url)
    lost = 0
    errors: list[str] = []
    started = time.perf_counter()
    async with client_for(url, variant) as client:
        if workload == "import":

            async def one(index: int) -> None:
                nonlocal lost
                try:
                    await client.import_user_message(f"u{index}", "bot", BODY)
                except Exception as exc:  # a refusal, counted below from the server
                    lost += 1
                    errors.append(f"{type(exc).__name__}: {exc}")

            async with anyio.create_task_group() as tg:
                for index in range(units):
                    tg.start_soon(one, index)
        else:
            ids = (f"{workload[:-1]}-{index:05d}" for index in range(units))
            async with client.fan_out(ids, BODY, target=workload) as results:  # type: ignore[arg-type]
                async for result in results:
                    lost += len(result.failed) + len(result.unknown)
                    for exc in (*result.failed.values(), *result.unknown.values()):
                        errors.append(f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    record = await stats(url)
    async with httpx.AsyncClient(timeout=60) as http:
        admissions = (await http.get(f"{url}/_emulator/admissions")).json()["admissions"]
    rate = RateLimits().rate(limit_name)  # type: ignore[arg-type]
    assert rate is not None
    refusals = sum(v for k, v in record["refused"].items() if k.startswith("limit:"))
    return {
        "workload": workload,
        "variant": variant,
        "round trip ms": round(rtt * 1000),
        "use": use_of(admissions, limit_name, rate.limit, rate.per),
        "refusals": refusals,
        "lost": lost,
        "duplicates": record["duplicates"],
        "seconds": elapsed,
        # What was lost, and why (the first few, deduplicated).
        "errors": sorted(set(errors))[:5],
    }


async def fresh_network_run(url: str, workload: str, variant: str, rtt: float) -> dict[str, Any]:
    """:func:`network_run` in a new Python process, as a user's worker meets it.

    Every run in one long process carried the garbage of the runs before it: the collector's
    full passes (60-75 ms each, twice a run) then fell inside the measured windows, which no
    user's fresh worker pays (docs/design.md, "On a network").
    """
    command = [sys.executable, __file__, url, workload, variant, str(rtt)]
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    )
    row: dict[str, Any] = json.loads(done.stdout)
    return row


async def cli_import_run(url: str, lines: int = 1000) -> dict[str, Any]:
    """`agora-chat import` at its defaults: lines a second the server counted."""
    await reset(url)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "messages.jsonl"
        path.write_text(
            "".join(
                f'{{"from":"u{index}","target":"bot","type":"txt",'
                f'"body":{{"msg":"line {index}"}}}}\n'
                for index in range(lines)
            )
        )
        env = {
            "AGORA_CHAT_BASE_URL": url,
            "AGORA_CHAT_ORG": "test-org",
            "AGORA_CHAT_APP": "test-app",
            "AGORA_CHAT_TOKEN": "test-token",
            "PATH": "/usr/bin:/bin",
        }
        command = [str(Path(sys.executable).parent / "agora-chat"), "import", "users", str(path)]
        command.append("--no-progress")
        await anyio.to_thread.run_sync(
            lambda: subprocess.run(command, env=env, check=True, capture_output=True)  # noqa: S603
        )
    async with httpx.AsyncClient(timeout=60) as http:
        admissions = (await http.get(f"{url}/_emulator/admissions")).json()["admissions"]
    times = [at for name, at, _ in admissions if name == "other"]
    span = (max(times) - min(times)) / 1000
    record = await stats(url)
    refusals = sum(v for k, v in record["refused"].items() if k.startswith("limit:"))
    return {
        "lines": len(times),
        "lines/s": (len(times) - 1) / span if span else 0.0,
        "refusals": refusals,
    }


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.1%} / {statistics.median(values):.1%} / {max(values):.1%}"


#: The client variants compared on each workload: the library on all, its earlier rule
#: (the whole round trip charged) and the aiolimiter baseline on rooms (the picture's).
VARIANTS = {
    "groups": ("agora-chat-async",),
    "rooms": ("agora-chat-async", "whole round trip", "aiolimiter"),
    "import": ("agora-chat-async",),
}


async def network_section(
    runs: int,
    round_trips: Sequence[float] = ROUND_TRIPS,
    variants: Sequence[str] | None = None,
    workloads: Sequence[str] = tuple(WORKLOADS),
) -> tuple[str, list[dict[str, Any]]]:
    """Every workload and variant at every round trip, *runs* times each."""
    rows: list[dict[str, Any]] = []
    for rtt in round_trips:
        args = ("--round-trip", str(rtt), "--jitter", "0.1") if rtt else ()
        with emulator_process(*args) as url:
            for _ in range(runs):
                for workload in workloads:
                    for variant in variants or VARIANTS[workload]:
                        row = await fresh_network_run(url, workload, variant, rtt)
                        print(row, file=sys.stderr)
                        rows.append(row)
    lines = [
        "| workload | client | round trip | use min / median / max | refusals | lost "
        "| duplicates |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workload in workloads:
        for variant in variants or VARIANTS[workload]:
            for rtt in round_trips:
                group = [
                    r
                    for r in rows
                    if r["workload"] == workload
                    and r["variant"] == variant
                    and r["round trip ms"] == round(rtt * 1000)
                ]
                lines.append(
                    f"| {workload} | {variant} | {round(rtt * 1000)} ms | "
                    f"{spread([r['use'] for r in group])} | {sum(r['refusals'] for r in group)} | "
                    f"{sum(r['lost'] for r in group)} | {sum(r['duplicates'] for r in group)} |"
                )
    title = f"### Per-second quotas over a network ({runs} runs each, 10% jitter each way)\n\n"
    return title + "\n".join(lines) + "\n", rows


async def cli_import_section(runs: int, rtt: float = 0.2) -> str:
    """`agora-chat import` at its defaults over a *rtt* network."""
    results = []
    with emulator_process("--round-trip", str(rtt), "--jitter", "0.1") as url:
        for _ in range(runs):
            results.append(await cli_import_run(url))
            print(results[-1], file=sys.stderr)
    rates = [r["lines/s"] for r in results]
    return (
        f"### `agora-chat import` at its defaults, {round(rtt * 1000)} ms round trip "
        f"({runs} runs)\n\nlines a second the server counted, of the 100/s quota: "
        f"{min(rates):.1f} / {statistics.median(rates):.1f} / {max(rates):.1f} "
        f"(min / median / max); refusals {[r['refusals'] for r in results]}\n"
    )


if __name__ == "__main__":  # one run, in a process of its own: URL WORKLOAD VARIANT RTT
    url, workload, variant, rtt = sys.argv[1:]
    print(json.dumps(anyio.run(network_run, url, workload, variant, float(rtt))))
