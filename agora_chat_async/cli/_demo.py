"""``agora-chat demo``: starts the bundled emulator in-process with the documented
quotas on a sped-up clock, fans one message out to generated users, groups and
rooms at once with a live progress bar, and ends with a summary table. It needs
no account and no network.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from .._exceptions import AgoraChatError, OutcomeUnknownError
from .._models import SendResult, TextBody
from .._rates import RateLimits
from .._tasks import task_group
from ._progress import Update, progress_bars

if TYPE_CHECKING:
    from .._client import AgoraChatClient
    from ..testing import Emulator

__all__ = ["run_demo"]

_KINDS = ("users", "groups", "rooms")
#: The client's safety margin in the demo, in emulated seconds: at 60x real time, a
#: millisecond of scheduling jitter on this machine is 60 ms of emulated time.
_MARGIN = 0.1


def run_demo(counts: dict[str, int], scale: float) -> int:
    """``agora-chat demo``: the exit status (1 when any recipient was not delivered)."""
    return anyio.run(_demo, counts, scale)


async def _demo(counts: dict[str, int], scale: float) -> int:
    from rich.console import Console

    from ..testing import Emulator

    console = Console(width=max(Console().width, 100))
    emulator = Emulator(time_scale=scale)
    console.print(
        f"[bold]agora-chat demo[/]: the bundled emulator enforces the documented per-app quotas "
        f"(6000 users/min, 20 groups/s, 100 rooms/s) on a clock running {scale:g}x real time."
    )
    results: dict[str, SendResult] = {kind: SendResult() for kind in _KINDS}
    started_real, started_emulated = time.perf_counter(), emulator.clock.now()
    # Rates per emulated minute: real seconds times 60 / scale.
    with progress_bars(rate_unit="/emulated min", rate_factor=60 / scale, console=console) as bars:
        limits = RateLimits(margin=_MARGIN)
        async with (
            emulator.client(rate_limits=limits) as client,
            task_group() as tasks,
        ):
            for kind in _KINDS:
                update = bars.add(kind, counts[kind])
                tasks.start_soon(_fan_out, _Target(kind, counts[kind], update), client, results)
    elapsed_real = time.perf_counter() - started_real
    elapsed_emulated = emulator.clock.now() - started_emulated
    console.print(_summary(emulator, results, counts, elapsed_real, elapsed_emulated))
    ok = all(result.ok for result in results.values())
    return 0 if ok else 1


class _Target(NamedTuple):
    kind: str
    total: int
    update: Update


async def _fan_out(
    target: _Target, client: AgoraChatClient, results: dict[str, SendResult]
) -> None:
    kind = target.kind
    prefix = {"users": "user", "groups": "group", "rooms": "room"}[kind]
    recipients = (f"{prefix}-{index:06d}" for index in range(target.total))
    body = TextBody(msg="Hello from agora-chat-async: this message reached everyone, once.")
    delivered: dict[str, str] = {}
    failed: dict[str, AgoraChatError] = {}
    unknown: dict[str, OutcomeUnknownError] = {}
    done = 0
    async with client.fan_out(recipients, body, target=kind) as batches:  # type: ignore[arg-type]
        async for result in batches:
            delivered.update(result.message_ids)
            failed.update(result.failed)
            unknown.update(result.unknown)
            done += result.recipients
            target.update(done)
    results[kind] = SendResult(message_ids=delivered, failed=failed, unknown=unknown)


def _summary(
    emulator: Emulator,
    results: dict[str, SendResult],
    counts: dict[str, int],
    elapsed_real: float,
    elapsed_emulated: float,
) -> Any:
    from rich.table import Table

    table = Table(title="agora-chat demo: summary", title_justify="left")
    for column in (
        "target",
        "sent to",
        "delivered",
        "failed",
        "unknown",
        "refused",
        "peak/window",
        "quota",
    ):
        table.add_column(column, justify="left" if column == "target" else "right")
    limits = emulator.rate_limits
    for kind in _KINDS:
        result = results[kind]
        rate = limits.rate(kind) if limits is not None else None  # type: ignore[arg-type]
        allowed = f"{rate.limit}/{rate.per:g}s" if rate is not None else "none"
        table.add_row(
            kind,
            f"{counts[kind]:,}",
            f"{len(result.message_ids):,}",
            f"{len(result.failed):,}",
            f"{len(result.unknown):,}",
            f"{emulator.refused[f'limit:{kind}']:,}",
            f"{emulator.peak_units.get(kind, 0):,}",
            allowed,
        )
    table.caption = (
        f"{elapsed_real:.1f} s real = {elapsed_emulated / 60:.1f} emulated min; "
        f"{sum(emulator.requests.values()):,} requests; "
        f"{emulator.duplicates} duplicates; refused = 429/403 answers for a quota"
    )
    return table
