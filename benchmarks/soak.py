"""A bounded soak: a steady fan-out with faults on, watching the client's resources over time.

    python benchmarks/soak.py              # 3 minutes
    python benchmarks/soak.py --minutes 1

Against an emulator process on 127.0.0.1 that refuses 5% of requests with 503, processes
then answers 500 on 1% and drops 1% of connections mid-response, one client fans a message
out to generated users, batch after batch, for the given time (the quota is raised so that
the client, not the quota, sets the pace). Every ten seconds it samples the client process:
Python heap in use (tracemalloc), resident memory, open file descriptors and open sockets.
Growth from the first sample after warm-up to the last is the figure to watch: a leak of
tasks, connections, files or per-recipient state shows as a steady climb.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
from _harness import emulator_process

from agora_chat_async import AgoraChatClient, Rate, RateLimits, SendResult, StaticToken, TextBody

FAULTS = "refuse_503=0.05,process_then_500=0.01,drop_connection=0.01"


def sample() -> dict[str, float]:
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    rss_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return {
        "heap MB": tracemalloc.get_traced_memory()[0] / 1e6,
        "RSS MB": rss_pages * os.sysconf("SC_PAGE_SIZE") / 1e6,
        "open fds": len(fds),
        "sockets": sockets,
    }


async def soak(url: str, seconds: float) -> list[dict[str, Any]]:
    fast = Rate(60_000, per=1)
    limits = RateLimits(
        users=fast, groups=fast, rooms=fast, other=fast, send_calls=Rate(400, per=1)
    )
    counts = {"delivered": 0, "failed": 0, "unknown": 0}
    samples: list[dict[str, Any]] = []
    started = time.monotonic()

    def progress(result: SendResult) -> None:
        counts["delivered"] += len(result.message_ids)
        counts["failed"] += len(result.failed)
        counts["unknown"] += len(result.unknown)

    async def sampler() -> None:
        while True:
            await anyio.sleep(10)
            samples.append({"t (s)": round(time.monotonic() - started), **sample(), **counts})

    def recipients() -> Any:
        index = 0
        while time.monotonic() - started < seconds:
            yield f"user-{index:09d}"
            index += 1

    tracemalloc.start()
    async with (
        AgoraChatClient(
            url, "test-org", "test-app", auth=StaticToken("test-token"), rate_limits=limits
        ) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(sampler)
        async with client.fan_out(recipients(), TextBody(msg="soak"), progress=progress) as results:
            async for _ in results:
                pass
        tg.cancel_scope.cancel()
    samples.append({"t (s)": round(time.monotonic() - started), **sample(), **counts, "closed": 1})
    tracemalloc.stop()
    return samples


def table(samples: list[dict[str, Any]]) -> str:
    columns = [
        "t (s)",
        "delivered",
        "failed",
        "unknown",
        "heap MB",
        "RSS MB",
        "open fds",
        "sockets",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in samples:
        cells = [f"{row[c]:,.1f}" if isinstance(row[c], float) else f"{row[c]:,}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main(minutes: float) -> str:
    with emulator_process("--unlimited", "--no-record", "--faults", FAULTS, "--seed", "1") as url:
        samples = await soak(url, minutes * 60)
    running = [row for row in samples if "closed" not in row]
    warm, last = running[1] if len(running) > 1 else running[0], running[-1]
    growth = {key: last[key] - warm[key] for key in ("heap MB", "RSS MB", "open fds", "sockets")}
    summary = (
        f"From t={warm['t (s)']} s to t={last['t (s)']} s: heap {growth['heap MB']:+.1f} MB, "
        f"RSS {growth['RSS MB']:+.1f} MB, open fds {growth['open fds']:+d}, "
        f"sockets {growth['sockets']:+d}; after closing the client: "
        f"{samples[-1]['sockets']} sockets."
    )
    return f"### Soak ({minutes:g} min, faults: {FAULTS})\n\n{table(samples)}\n\n{summary}\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    print(anyio.run(main, args.minutes))
