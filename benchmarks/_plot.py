"""The picture of a mixed run: units counted per window over time, bulk and interactive stacked.

Needs matplotlib (the ``bench`` extra). One panel per run, side by side, each against its
limit line, from the timelines of :mod:`_timeline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _timeline import window_series


def plot_windows(
    panels: Sequence[tuple[str, dict[str, list[float]], list[tuple[float, float]]]],
    *,
    limit: int,
    per: float,
    path: Path,
) -> None:
    """Draw each ``(title, timeline, waits)`` panel.

    Top: the units in the window ``(t - per, t]`` at each t. A timeline maps ``"user"``
    (the fan-out's recipients) and ``"web"`` (the single sends) to the server's times of
    their deliveries, in emulated seconds. Bottom: each single send's wait, as a share of
    the window, at the time it was made (*waits*: ``(emulated seconds, share)``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        2,
        len(panels),
        figsize=(5.4 * len(panels), 5.6),
        sharey="row",
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.3]},
    )
    for column, (title, timeline, waits) in enumerate(panels):
        axis = axes[0][column]
        bulk, web = timeline.get("user", []), timeline.get("web", [])
        end = max([*bulk, *web, per]) + per
        samples = [end * i / 1200 for i in range(1201)]
        bulk_units = window_series(bulk, per, samples)
        web_units = window_series(web, per, samples)
        axis.stackplot(
            samples,
            bulk_units,
            web_units,
            labels=["bulk (fan_out)", "interactive (single sends)"],
            colors=["#4c72b0", "#dd8452"],
            step="post",
        )
        axis.axhline(limit, color="#c44e52", linewidth=1.2, linestyle="--", label="limit")
        # The top of the window, where the headroom and the single sends are.
        zoom = axis.inset_axes((0.3, 0.06, 0.66, 0.4))
        zoom.stackplot(samples, bulk_units, web_units, colors=["#4c72b0", "#dd8452"], step="post")
        zoom.axhline(limit, color="#c44e52", linewidth=1.2, linestyle="--")
        zoom.set_xlim(0, end)
        zoom.set_ylim(limit * 0.97, limit * 1.005)
        zoom.tick_params(labelsize=7)
        zoom.set_title(f"zoom: {0.97 * limit:,.0f} to {1.005 * limit:,.0f}", fontsize=7)
        axis.set_title(title, fontsize=10)
        axis.set_xlim(0, end)
        axis.set_ylim(0, limit * 1.12)
        axis.grid(alpha=0.3)
        below = axes[1][column]
        below.scatter(
            [t for t, _ in waits], [100 * w for _, w in waits], s=9, color="#dd8452", zorder=3
        )
        below.axhline(10, color="#c44e52", linewidth=1, linestyle=":", label="10% of the window")
        below.set_xlim(0, end)
        below.set_ylim(0, 105)
        below.set_xlabel("emulated seconds")
        below.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"units counted in the last {per:g} s")
    axes[1][0].set_ylabel("single send wait,\n% of the window")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    axes[1][-1].legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def network_picture(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Rooms (100/s): quota use against round trip, min to max of the runs and the
    median, for each client variant (``_network.network_section``'s rows)."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.2, 4.4))
    rooms = [row for row in rows if row["workload"] == "rooms"]
    for variant, colour in (
        ("agora-chat-async", "tab:blue"),
        ("whole round trip", "tab:orange"),
        ("aiolimiter", "tab:gray"),
    ):
        mine = [row for row in rooms if row["variant"] == variant]
        trips = sorted({row["round trip ms"] for row in mine})
        if not trips:
            continue
        uses = [[row["use"] * 100 for row in mine if row["round trip ms"] == t] for t in trips]
        label = {
            "agora-chat-async": "agora-chat-async (the service's clock)",
            "whole round trip": "agora-chat-async 0.1 (whole round trip charged)",
            "aiolimiter": "aiolimiter baseline (refusals not shown)",
        }[variant]
        axis.plot(trips, [statistics.median(u) for u in uses], "o-", color=colour, label=label)
        axis.fill_between(
            trips, [min(u) for u in uses], [max(u) for u in uses], color=colour, alpha=0.2
        )
    axis.axhline(100, color="black", linewidth=0.8)
    axis.set_xlabel("round trip (ms), 10% of it as jitter each way")
    axis.set_ylabel("quota use (% of the shortest possible span)")
    axis.set_title("fan_out to 2,000 rooms at 100 rooms/s, strict sliding window")
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
