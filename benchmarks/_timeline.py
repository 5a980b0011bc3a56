"""What the server counted, over time: the emulator's deliveries as a timeline.

The benchmarks read ``GET /_emulator/deliveries`` after a run and measure from it, so every
figure is what the server saw, on the server's (time-scaled) clock.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import httpx


async def delivery_times(url: str) -> dict[str, list[float]]:
    """Emulated seconds of every delivery since the first, by recipient prefix (``user``, ...)."""
    async with httpx.AsyncClient(timeout=60) as http:
        rows = (await http.get(f"{url}/_emulator/deliveries")).json()["deliveries"]
    if not rows:
        return {}
    origin = min(row[0] for row in rows)
    by_kind: dict[str, list[float]] = {}
    for millis, _, recipient in rows:
        by_kind.setdefault(recipient.split("-", 1)[0], []).append((millis - origin) / 1000)
    for times in by_kind.values():
        times.sort()
    return by_kind


def sustained_use(times: Sequence[float], limit: int, per: float) -> float:
    """The share of the quota a fan-out used while it had work: its rate over its full windows.

    *times* (sorted) are when the server counted each of the fan-out's units. They are cut
    into windows as a sliding window fills them: the first begins at the first unit, each
    next one at the first unit at least *per* after the beginning of the one before. The
    last, which the input ran out in, is left out: the units of the others, over the quota
    that passed from the first unit to the beginning of the last window. Unlike
    ``delivered / (limit x (elapsed / per + 1))`` it does not charge a whole window for a
    few units that spilled into one, so it compares fan-outs of any size.
    """
    last = 0
    while (following := bisect_left(times, times[last] + per)) < len(times):
        last = following
    if last == 0:
        return len(times) / limit  # everything fitted in one window
    return last / (limit * (times[last] - times[0]) / per)


def window_series(times: Sequence[float], per: float, samples: Sequence[float]) -> list[int]:
    """Units counted in the window ``(t - per, t]`` at each sample time *t*."""
    return [bisect_right(times, t) - bisect_right(times, t - per) for t in samples]
