"""The inbox page: what the app sent, in a browser, at the emulator's root (``GET /``).

Server-rendered HTML from the same state the inspection API reads: the messages by
recipient (recalled, edited, offline and imported ones marked), each quota's window
filling, with a chart of the last five minutes, the broadcasts, and the faults in force.
The page replaces its live part every second with ``GET /_emulator/inbox`` (the same
HTML fragment), from a dozen lines of inline script: no build step, no framework, nothing
downloaded, so it works offline. ``?recipient=<id>`` shows every message one recipient
got. Every value from a request is escaped.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import attrs

from .._asgi import HTTPResponse
from .._faults import Faults
from .._network import LOOPBACK
from ._state import FEATURES, Delivery

if TYPE_CHECKING:
    from .._asgi import HTTPRequest
    from ._app import Emulator

__all__ = ["inbox_fragment", "inbox_page"]

#: The most recent deliveries the page groups by recipient.
RECENT: Final = 200
#: The chart: this many emulated seconds, in buckets of this many.
CHART_SPAN: Final = 300.0
CHART_BUCKET: Final = 5.0
_CHART_WIDTH: Final = 240
_CHART_HEIGHT: Final = 40

_STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2430; }
h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; } td, th { padding: .25em .6em; text-align: left;
  border-bottom: 1px solid #e3e6ea; vertical-align: top; }
.muted { color: #6b7380; } .mark { font-size: .8em; padding: 0 .4em; border-radius: .6em;
  background: #eef1f5; margin-left: .3em; } .recalled { background: #fde2e1; }
.edited { background: #fff3c4; } .imported { background: #e1f0fd; }
.offline { background: #ececec; } .over { color: #b42318; font-weight: 600; }
.recipient { font-weight: 600; } code { font-size: .9em; }
svg { vertical-align: middle; } form { margin: .6em 0; }
"""

_SCRIPT: Final = """
const live = document.getElementById("live");
async function refresh() {
  try {
    const answer = await fetch("/_emulator/inbox" + location.search, {cache: "no-store"});
    if (answer.ok) {
      live.innerHTML = await answer.text();
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
    }
  } finally {
    setTimeout(refresh, 1000);
  }
}
setTimeout(refresh, 1000);
"""


async def inbox_page(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    """The whole page: a header, a recipient filter and the live part."""
    title = f"{emulator.org_name}/{emulator.app_name}"
    recipient = request.query.get("recipient", "")
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Inbox: {escape(title)}</title>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        # No icon: a browser's request for /favicon.ico would be a refusal in the stats.
        '<link rel=icon href="data:,">'
        f"<style>{_STYLE}</style></head><body data-refreshes=0>"
        f"<h1>Agora Chat emulator: {escape(title)}</h1>"
        "<p class=muted>What the app sent, live. The inspection API "
        "(<code>/_emulator/stats</code>, <code>/_emulator/deliveries</code>) reads the same "
        "state.</p>"
        '<form method=get action="/"><label>Recipient <input name=recipient '
        f'value="{escape(recipient)}"></label> <button>Show</button> '
        '<a href="/">all</a></form>'
        f"<div id=live>{_live(emulator, recipient)}</div>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
    return _html(html)


async def inbox_fragment(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    """The live part alone (``GET /_emulator/inbox``), what the page refreshes."""
    return _html(_live(emulator, request.query.get("recipient", "")))


def _html(text: str) -> HTTPResponse:
    return HTTPResponse(
        200,
        text.encode("utf-8"),
        {"content-type": "text/html; charset=utf-8", "cache-control": "no-store"},
    )


def _live(emulator: Emulator, recipient: str) -> str:
    now = emulator.wall_time()
    parts = [
        f"<p class=muted>Emulator time <span id=now>{_clock(now * 1000)}</span> UTC. "
        f"<b id=delivered>{emulator.delivered_count}</b> deliveries, "
        f"<b id=requests>{sum(emulator.requests.values())}</b> requests, "
        f"<b id=refused>{sum(emulator.refused.values())}</b> refused.</p>",
        "<h2>Quotas</h2>",
        _quotas(emulator, now),
        "<h2>Faults in force</h2>",
        _faults(emulator),
    ]
    if recipient:
        deliveries = emulator.delivered_to(recipient)
        parts += [
            f"<h2>Messages to {escape(recipient)} ({len(deliveries)})</h2>",
            _messages(emulator, deliveries) if deliveries else "<p class=muted>None.</p>",
        ]
    else:
        recent = emulator.deliveries[-RECENT:]
        parts += [
            f"<h2>Messages, by recipient (the last {len(recent)} deliveries)</h2>",
            _messages(emulator, recent) if recent else "<p class=muted>None yet.</p>",
        ]
    if emulator.broadcasts:
        parts += ["<h2>Broadcasts</h2>", _broadcasts(emulator)]
    if emulator.imports:
        parts += ["<h2>Imported</h2>", _imports(emulator)]
    return "".join(parts)


# -- quotas ---------------------------------------------------------------------------------------


def _quotas(emulator: Emulator, now: float) -> str:
    rates = emulator._rates()
    if not rates:
        return "<p class=muted>No limits (<code>rate_limits=None</code>).</p>"
    rows = [
        "<table id=quotas><tr><th>limit</th><th>in the current window</th><th>of</th>"
        "<th>per</th><th>refused</th><th>peak</th><th>the last five minutes</th></tr>"
    ]
    by_limit: dict[str, list[tuple[float, int]]] = {name: [] for name in rates}
    peaks = emulator.peak_units
    for name, at, units in emulator.admissions[-_tail(emulator, rates, now) :]:
        if name in by_limit:
            by_limit[name].append((at / 1000, units))
    for name, rate in rates.items():
        admitted = by_limit[name]
        if emulator.record_deliveries:
            used: object = _units_since(admitted, now - rate.per)
            chart = _chart(admitted, rate.limit, rate.per, now)
        else:
            used, chart = "not recorded", ""
        over = " class=over" if isinstance(used, int) and used > rate.limit else ""
        rows.append(
            f"<tr data-limit={name}><td>{name}</td><td class=used{over}>{used}</td>"
            f"<td class=limit>{rate.limit}</td><td>{rate.per:g} s</td>"
            f"<td class=refused>{emulator.refused[f'limit:{name}']}</td>"
            f"<td>{peaks.get(name, 0)}</td><td>{chart}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _tail(emulator: Emulator, rates: Mapping[str, Any], now: float) -> int:
    """How many of the last admissions reach back from *now* over the chart's span (and
    a window)."""
    reach = CHART_SPAN + max(rate.per for rate in rates.values())
    horizon = (now - reach) * 1000
    admissions = emulator.admissions  # in time order
    return len(admissions) - bisect.bisect_right(admissions, horizon, key=lambda row: row[1])


def _units_since(admitted: Sequence[tuple[float, int]], start: float) -> int:
    """Units admitted after *start* (all of them are at or before now: no upper bound to
    compare, so no rounding of the times can drop the latest)."""
    first = bisect.bisect_right(admitted, start, key=lambda row: row[0])
    return sum(units for _, units in admitted[first:])


def _chart(admitted: Sequence[tuple[float, int]], limit: int, per: float, now: float) -> str:
    """Units admitted in each bucket against what the quota allows in one, as a line
    (the dashed line is the quota)."""
    buckets = int(CHART_SPAN / CHART_BUCKET)
    start = now - CHART_SPAN
    filled = [0] * buckets
    for at, units in admitted:
        index = int((at - start) // CHART_BUCKET)
        if 0 <= index < buckets:
            filled[index] += units
    allowed = limit * CHART_BUCKET / per
    top = max(1.25, *(units / allowed for units in filled))
    points = " ".join(
        f"{index * _CHART_WIDTH / (buckets - 1):.1f},"
        f"{_CHART_HEIGHT - (units / allowed) / top * _CHART_HEIGHT:.1f}"
        for index, units in enumerate(filled)
    )
    quota = _CHART_HEIGHT - _CHART_HEIGHT / top
    return (
        f'<svg width={_CHART_WIDTH} height={_CHART_HEIGHT} role=img aria-label="units '
        'admitted per 5 s against the quota">'
        f'<line x1=0 x2={_CHART_WIDTH} y1={quota:.1f} y2={quota:.1f} stroke="#b42318" '
        'stroke-dasharray="3 3"/>'
        f'<polyline fill=none stroke="#2f6fde" stroke-width=1.5 points="{points}"/></svg>'
    )


# -- faults ---------------------------------------------------------------------------------------


def _faults(emulator: Emulator) -> str:
    items = []
    for endpoint, faults in sorted(emulator.faults.items()):
        changed = {
            field.name: getattr(faults, field.name)
            for field in attrs.fields(Faults)
            if getattr(faults, field.name) != field.default
        }
        if changed:
            settings = ", ".join(f"{key}={value:g}" for key, value in changed.items())
            items.append(f"<li><code>{escape(endpoint)}</code>: {settings}</li>")
    network = emulator.network
    if network != LOOPBACK:
        items.append(
            f"<li>network: {network.forward * 1000:g} ms forward, {network.back * 1000:g} ms "
            f"back, jitter {network.jitter * 1000:g} ms</li>"
        )
    if emulator.plan_quota is not None:
        items.append(f"<li>plan quota: {emulator.plan_quota} recipients</li>")
    lacking = sorted(set(FEATURES) - emulator.features)
    if lacking:
        items.append(f"<li>features the app lacks: {', '.join(lacking)}</li>")
    if not items:
        return "<p id=faults class=muted>None.</p>"
    return f"<ul id=faults>{''.join(items)}</ul>"


# -- messages -------------------------------------------------------------------------------------


def _messages(emulator: Emulator, deliveries: Sequence[Delivery]) -> str:
    """*deliveries* in one table, grouped by recipient, the most recent recipient first."""
    groups: dict[tuple[str, str], list[Delivery]] = {}
    for delivery in reversed(deliveries):
        groups.setdefault((delivery.chat_type, delivery.recipient), []).append(delivery)
    out = [
        "<table id=messages><tr><th>recipient</th><th>time</th><th>from</th><th>type</th>"
        "<th>body</th><th>options</th><th></th></tr>"
    ]
    for (chat_type, recipient), received in groups.items():
        query = escape(quote(recipient, safe=""))
        link = f'<a href="/?recipient={query}">{escape(recipient)}</a>'
        head = (
            f"<td rowspan={len(received)} class=recipient>{link} "
            f"<span class=muted>{escape(chat_type)}</span></td>"
        )
        for index, delivery in enumerate(received):
            out.append(_message_row(emulator, delivery, head if index == 0 else ""))
    out.append("</table>")
    return "".join(out)


def _message_row(emulator: Emulator, delivery: Delivery, head: str) -> str:
    marks = []
    if delivery.message_id in emulator.recalled:
        marks.append("<span class='mark recalled'>recalled</span>")
    edits = emulator.edits.get(delivery.message_id)
    if edits:
        marks.append(f"<span class='mark edited'>edited {len(edits)}x</span>")
    if delivery.offline and emulator.online_users:  # with no one online, all would be
        marks.append("<span class='mark offline'>offline</span>")
    options = [
        text
        for text, on in (
            (f"level={delivery.level}", delivery.level is not None),
            ("online only", delivery.online_only),
            ("sync device", delivery.sync_device),
            (f"in {delivery.target}", delivery.target is not None),
        )
        if on
    ]
    ext = f" <code>ext {escape(_short(delivery.ext))}</code>" if delivery.ext else ""
    body = edits[-1].new_msg if edits else delivery.body
    return (
        f'<tr data-recipient="{escape(delivery.recipient)}" '
        f'data-message-id="{escape(delivery.message_id)}">{head}'
        f"<td class=muted>{_clock(delivery.timestamp)}</td>"
        f"<td>{escape(delivery.sender)}</td><td>{escape(delivery.type)}</td>"
        f"<td class=body>{escape(_summary(body))}{ext}</td>"
        f"<td class=muted>{escape(', '.join(options))}</td><td>{''.join(marks)}</td></tr>"
    )


def _broadcasts(emulator: Emulator) -> str:
    rows = ["<table id=broadcasts>"]
    for record in reversed(emulator.broadcasts[-20:]):
        rows.append(
            f"<tr><td class=muted>{_clock(record.timestamp)}</td>"
            f"<td>to {escape(record.to)}</td><td>from {escape(record.sender)}</td>"
            f"<td>{escape(_summary(record.msg))}</td>"
            f"<td>reached {len(record.reached)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _imports(emulator: Emulator) -> str:
    rows = ["<table id=imports>"]
    for record in reversed(emulator.imports[-50:]):
        when = "" if record.msg_timestamp is None else _clock(record.msg_timestamp)
        rows.append(
            f"<tr><td class=muted>{when}</td><td>{escape(record.chat_type)} "
            f"{escape(record.target)}</td><td>from {escape(record.sender)}</td>"
            f"<td>{escape(_summary(record.body))}</td>"
            "<td><span class='mark imported'>imported</span></td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _summary(body: Mapping[str, Any]) -> str:
    """A message's body in one line: its text, event, file name or place."""
    for key in ("msg", "customEvent", "filename", "addr", "action"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value if key == "msg" else f"{key}: {value}"
    return _short(body)


def _short(value: object, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clock(millis: float) -> str:
    seconds = millis / 1000
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{int(millis % 1000):03d}"
