"""The rules one limit's window follows, shared by both limiters.

:class:`SlidingWindowLimiter` runs these functions in memory. ``_redis_limiter.lua``
mirrors them line by line in Redis, and is given every constant below when it is
loaded (:func:`lua_constants`), so the two runtimes cannot drift apart: a
hypothesis test drives both with the same admissions, completions, refusals and
clock steps and compares what they decide.

When a claim leaves its window
------------------------------
A claim is anchored at its start and leaves the window ``per + margin`` later,
unless its answer moves the anchor (:func:`settled_anchor`). The service counts
a request at some moment between its arrival and its answer, so a claim whose
request is on its way never leaves before its answer (it is *held*, still
counted, at most ``UNANSWERED_HOLD`` seconds past its window), and its answer
then charges it what is uncertain of when the service counted it, its *charge*:

- **With the service's clock.** Every answer carries ``timestamp`` (when it left,
  on the service's clock, ms) and ``duration`` (the time spent on it, ms), so the
  request's arrival on the service's clock is ``timestamp - duration``. Its
  *forward offset*, arrival minus start, is the forward delay plus the unknown,
  constant offset between the two clocks. The smallest forward offset of the
  answers of the last ``FLOOR_BUCKET`` to ``3 x FLOOR_BUCKET`` seconds
  (:class:`DelayFloor`) marks the earliest a request started now can be counted;
  a claim is charged ``timestamp - start - floor`` (plus ``RESOLUTION``): the
  forward delay's variation and the service's time, not the round trip. The
  first request of a connection says nothing of the floor (its forward delay may
  include a handshake, the client's or a proxy's), but it is charged like any.
- **Without it** (no timestamp, or no floor yet: the first answers), the whole
  round trip is charged when it exceeds ``margin / 2``, which needs no
  assumption: the service cannot count a request after answering it. A claim
  charged so for want of a floor, whose answer did carry the service's clock,
  keeps its key: the first floor to come places it as an answer that came with
  that floor would have been placed (:func:`moved_anchor`, earlier), under the
  same assumption as every claim charged against a floor. That is the cold
  start: the first window's requests all open connections, so the first floor
  comes from a later answer, while most of them are still in the window.

The first floor
---------------
A client that starts cold (no floor in force) opens a connection for each request
of its first window, and none of their answers is a sample of the floor: the
first floor would come from the next window's answers, after those requests had
already waited for the first window's claims charged the whole round trip (one
round trip lost at every cold start). So while no floor is in force and no answer
has come within its span (``answered_ago``), a window whose requests are on their
way keeps its last unit back (:func:`kept_for_a_floor`; none of a limit of one,
and nothing is kept while nothing is on its way: a client answered at once sends
as before): the first answer releases it,
its request goes on the connection that answered, and its answer, the first warm
one, brings the floor that moves the window's claims to where the service counted
them before the next window is due. That floor may come from one answer, whose
forward delay may be above the fastest by as much as the delay varies, so the
claims it moves earlier are placed against it less the spread of the forward
offsets of the answers charged without a floor (:func:`moved_anchor`: the cold
window's own variation, handshakes included). A waiter stopped only by that unit looks
again every ``HELD_POLL`` of ``per``, since an answer may come at any moment; in
memory, a waiter whose window holds claims that the first floor may move earlier
looks again as often (a Redis reservation made before the first floor keeps its
time, and decides again when it is due). Keeping a unit only ever admits less:
the window guarantee does not depend on it.

A charge is never more than the round trip. A ``timestamp`` that contradicts
the ones before it (:func:`check_clock`: a request that reached the service
before an earlier answer's clock reading allows, a clock stepped, stuck or not a
clock) resets the floor, and the whole round trip is charged for the next
``FLOOR_BUCKET`` seconds: an absurd timestamp costs speed, never the window.

What the window guarantee assumes: the service's clock runs at ours' rate
(ppm drift is far below ``margin`` within a window), and no request is counted
more than ``margin`` earlier, relative to its start, than the floor says (the
fastest answer of the last 20-60 s was within ``margin`` of the fastest
possible; the first floor's, within ``margin`` plus the spread of the cold
answers' forward offsets). A route that gets slower leaves the floor low for a while: every
claim is charged more, slower and safe. A route that gets faster by more than
``margin``, or a process joining a shared (Redis) window from a closer network,
breaks the assumption until its first answer lowers the floor; a refusal that
follows finds a full window refused, which widens the window (below). A waiting
claim decides again when it wakes up, so an anchor moved while it slept is
respected.

Adaptation to refusals
----------------------
When the service refuses a request for a rate limit anyway, the refused
request's permit is refunded and :func:`after_refusal` judges the refusal as of
the moment it happened, from the units the window held then (``accepted``),
those that had left it within ``JITTER_TOLERANCE`` of ``per`` (``recent``) and
the refused request's own:

- the refused request had filled the window to the effective limit, and that
  limit was not a probe above a level known to work: the service saw two
  windows' requests in one, a timing artifact, so the window is widened (by
  ``MIN_EXTRA_MARGIN`` of ``per``, doubling, up to ``MAX_EXTRA_MARGIN``);
- otherwise what was accepted is the service's limit: ``ESTIMATE_HEADROOM`` of
  it becomes the effective limit, held ``HOLD_WINDOWS`` windows, then probed
  upwards by ``PROBE_PER_WINDOW`` of the configured limit per window; a refusal
  while probing doubles the hold (up to ``MAX_HOLD_WINDOWS``);
- a window still nearly empty (under ``EARLY_FRACTION`` of the effective
  limit) says little: the limit is cut to ``DECREASE_FACTOR`` of itself, at
  most once a window.

The effective limit never drops below ``FLOOR_FRACTION`` of the configured one,
nor below one unit.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

__all__ = [
    "Adaptation",
    "Answered",
    "ClockCheck",
    "DelayFloor",
    "after_refusal",
    "answered",
    "check_clock",
    "effective_limit",
    "floor_value",
    "kept_for_a_floor",
    "lua_constants",
    "moved_anchor",
    "observe_floor",
    "replaced_anchor",
    "rotated_floor",
    "settled_anchor",
]

#: A refusal early in a window (fewer than this fraction of the effective limit in use)
#: says little about the server's limit: the effective limit is cut to DECREASE_FACTOR.
EARLY_FRACTION: Final = 0.5
DECREASE_FACTOR: Final = 0.7
#: A refusal of a request that had filled the window to its limit is a timing artifact:
#: the window is widened by this fraction of ``per``, doubling, up to MAX_EXTRA_MARGIN.
MIN_EXTRA_MARGIN: Final = 0.01
MAX_EXTRA_MARGIN: Final = 0.1
#: How far past the window (as a fraction of ``per``) a server's count may reach because
#: of jitter between our start and its count.
JITTER_TOLERANCE: Final = 0.1
#: The estimate taken from a refusal keeps this much headroom below what the server accepted.
ESTIMATE_HEADROOM: Final = 0.95
#: The effective limit never drops below this fraction of the configured one (nor below 1).
FLOOR_FRACTION: Final = 0.1
#: After a refusal, hold the effective limit this many windows before probing upwards;
#: each refusal met while probing doubles the hold, up to MAX_HOLD_WINDOWS.
HOLD_WINDOWS: Final = 8
MAX_HOLD_WINDOWS: Final = 80
#: While probing, the effective limit grows by this fraction of the configured limit per window.
PROBE_PER_WINDOW: Final = 0.05
#: Without the service's clock, an answer later than this fraction of ``margin`` after
#: the start moves the anchor to the answer.
LATE_FRACTION: Final = 0.5
#: The floor of forward offsets keeps the smallest seen in the current and the previous
#: bucket of this many seconds.
FLOOR_BUCKET: Final = 20.0
#: A claim whose answer has not come stays in its window (the service may count it yet),
#: at most this many seconds past it (a request that never ends must not hold it forever).
UNANSWERED_HOLD: Final = 60.0
#: While unanswered claims fill a window, a waiter looks again after this fraction of ``per``.
HELD_POLL: Final = 1 / 64
#: A claim that may shrink (``min_units``) waits for all its units instead when they fit
#: within this fraction of ``per`` after its minimum does.
SHRINK_WAIT: Final = 1 / 32
#: ``timestamp`` and ``duration`` are whole milliseconds: an offset computed from them
#: may be this many seconds off.
RESOLUTION: Final = 0.002

_CONSTANTS: Final = {
    "EARLY_FRACTION": EARLY_FRACTION,
    "DECREASE_FACTOR": DECREASE_FACTOR,
    "MIN_EXTRA_MARGIN": MIN_EXTRA_MARGIN,
    "MAX_EXTRA_MARGIN": MAX_EXTRA_MARGIN,
    "JITTER_TOLERANCE": JITTER_TOLERANCE,
    "ESTIMATE_HEADROOM": ESTIMATE_HEADROOM,
    "FLOOR_FRACTION": FLOOR_FRACTION,
    "HOLD_WINDOWS": HOLD_WINDOWS,
    "MAX_HOLD_WINDOWS": MAX_HOLD_WINDOWS,
    "PROBE_PER_WINDOW": PROBE_PER_WINDOW,
    "FLOOR_BUCKET": FLOOR_BUCKET,
    "UNANSWERED_HOLD": UNANSWERED_HOLD,
    "HELD_POLL": HELD_POLL,
    "SHRINK_WAIT": SHRINK_WAIT,
}


def lua_constants() -> str:
    """Lua ``local`` declarations of every constant, prepended to the Redis script."""
    return "".join(f"local {name} = {value!r}\n" for name, value in _CONSTANTS.items())


@attrs.frozen
class DelayFloor:
    """The smallest forward offset (arrival on the service's clock minus start on ours)
    of warm answers in the current bucket and the one before; times in the runtime's unit."""

    current: float = math.inf
    since: float = -math.inf
    previous: float = math.inf


def rotated_floor(floor: DelayFloor, at: float, bucket: float) -> DelayFloor:
    """*floor* as of *at*: a bucket older than *bucket* becomes the previous one."""
    if at - floor.since < bucket:
        return floor
    if at - floor.since < 2 * bucket:
        return DelayFloor(math.inf, at, floor.current)
    return DelayFloor(math.inf, at, math.inf)


def observe_floor(floor: DelayFloor, offset: float, at: float, bucket: float) -> DelayFloor:
    """*floor* after a warm answer at *at* whose request had forward offset *offset*."""
    floor = rotated_floor(floor, at, bucket)
    if offset < floor.current:
        return attrs.evolve(floor, current=offset)
    return floor


def floor_value(floor: DelayFloor, at: float, bucket: float) -> float:
    """The floor in force at *at*: infinite when no warm answer came lately."""
    floor = rotated_floor(floor, at, bucket)
    return min(floor.current, floor.previous)


def kept_for_a_floor(
    limit: int, flying: int, *, floored: bool, answered_ago: float, span: float
) -> int:
    """The units a window of *limit* keeps back for the first floor: one while no floor is
    in force (*floored*), no answer came within *span* (*answered_ago*, in the same unit;
    ``inf`` when none ever came) and *flying* of its claims are on their way (an answer
    will come), if *limit* is above one; else none."""
    return 1 if not floored and answered_ago >= span and flying > 0 and limit > 1 else 0


@attrs.frozen
class ClockCheck:
    """What the service's clock has shown lately: ``lags`` keeps the largest
    ``timestamp - answer`` (negated, as a :class:`DelayFloor` keeps the smallest), a lower
    bound of the offset between its clock and ours; ``distrust_until``, when its clock may
    be used again after a contradiction."""

    lags: DelayFloor = DelayFloor()
    distrust_until: float = -math.inf


def check_clock(
    check: ClockCheck,
    *,
    offset: float,
    lag: float,
    floor: float,
    at: float,
    bucket: float,
    resolution: float = RESOLUTION,
) -> tuple[ClockCheck, bool, bool]:
    """Whether an answer's timing can be used: ``(state, usable, contradicted)``.

    *offset* is the answer's forward offset, *lag* its ``timestamp`` minus when it came
    (both on the runtime's clocks), *floor* the floor in force. A truthful clock keeps
    ``lag <= offset' `` for every pair of answers (the clocks' offset lies between them);
    one that breaks it contradicts itself: the caller resets its floor, and the clock is
    not used for *bucket*.
    """
    lower = -floor_value(check.lags, at, bucket)
    if offset < lower - resolution or lag > floor + resolution:
        return ClockCheck(distrust_until=at + bucket), False, True
    check = attrs.evolve(check, lags=observe_floor(check.lags, -lag, at, bucket))
    return check, at >= check.distrust_until, False


def settled_anchor(
    started: float,
    done: float,
    margin: float,
    *,
    offset: float | None = None,
    duration: float = 0.0,
    floor: float = math.inf,
    resolution: float = RESOLUTION,
) -> float | None:
    """The new anchor of a claim that started at *started* and was answered at *done*.

    *offset* is the request's forward offset (``timestamp - duration`` on the service's
    clock, minus *started*), *duration* the service's time on it, *floor* the
    :class:`DelayFloor` in force (*resolution*: of the service's readings, in the
    runtime's unit): the claim is charged ``offset + duration - floor`` (at most the
    round trip). Without an offset or a floor, the whole round trip, if over
    ``margin / 2``. ``None``: the anchor stays.
    """
    rtt = done - started
    if offset is None or floor == math.inf:
        return done if rtt > LATE_FRACTION * margin else None
    charge = min(max(offset + duration - floor + resolution, 0.0), rtt)
    return started + charge if charge > 0 else None


def replaced_anchor(key: float, floor: float, started: float, done: float) -> float:
    """Where a claim charged against a floor belongs once the floor in force is *floor*.

    *key* is its answer's ``timestamp`` plus ``RESOLUTION`` (the latest the service can
    have counted it, on the service's clock), so ``key - floor`` is its anchor, as
    :func:`settled_anchor` placed it, within its start and its answer. A floor of
    ``-inf`` (its clock contradicted) places it at its answer: the whole round trip.
    """
    return min(max(key - floor, started), done)


def moved_anchor(
    anchor: float,
    key: float,
    floor: float,
    started: float,
    done: float,
    *,
    floorless: bool,
    spread: float = 0.0,
) -> float:
    """Where a claim anchored at *anchor* moves when the floor in force drops to *floor*
    (:func:`replaced_anchor`): never earlier, unless it was charged the whole round trip
    for want of any floor (*floorless*) and *floor* is the first, which places it as an
    answer that came with a floor *spread* lower would have been placed (*spread*: how
    far the forward offsets of the answers charged without a floor spread, since the
    first floor may come from one answer, as slow as the forward delay varies)."""
    if floorless and floor != -math.inf:
        return replaced_anchor(key, floor - spread, started, done)
    return max(anchor, replaced_anchor(key, floor, started, done))


@attrs.frozen
class Answered:
    """What one answer leaves: the floor and clock check after it, where its claims move
    (``None``: they stay), whether its forward offset lowered the floor's current bucket
    (news for the other processes sharing a floor), the claims' *key* when the service's
    clock said when it had them (for :func:`moved_anchor`), ``replace``: the floor in force
    dropped, or came where there was none (``-inf``: a clock contradicted itself), so the
    claims charged against a higher one, or against none, move (:func:`moved_anchor`), and
    ``floorless``: these claims were charged the whole round trip for want of a floor,
    though *key* says when the service had them (the first floor moves them earlier)."""

    floor: DelayFloor
    check: ClockCheck
    anchor: float | None
    lowered: bool = False
    key: float | None = None
    replace: float | None = None
    #: Its forward offset as a sample of the floor (from when its bytes left, if known).
    sample: float | None = None
    floorless: bool = False


def answered(
    floor: DelayFloor,
    check: ClockCheck,
    *,
    started: float,
    done: float,
    at: float,
    margin: float,
    bucket: float,
    resolution: float = RESOLUTION,
    offset: float | None = None,
    lag: float = 0.0,
    duration: float | None = None,
    warm: bool = False,
    sent_offset: float | None = None,
) -> Answered:
    """One answer, in both runtimes: a claim started at *started* and answered at *done*
    (the floor's time *at*), with the service's forward *offset*, *lag* (``timestamp``
    minus the answer) and *duration* if it said them; *warm*: not the first request of its
    connection; *sent_offset*: the forward offset from when its body began to leave (later
    than its start by whatever the client itself took: a busy event loop, the pool), the
    floor's sample when known. Without an offset, or with a clock that contradicts itself
    (:func:`check_clock`), the whole round trip is charged."""
    whole = Answered(floor, check, settled_anchor(started, done, margin))
    if offset is None:
        return whole
    before = floor_value(floor, at, bucket)
    sample = offset if sent_offset is None else min(sent_offset, offset)
    check, usable, contradicted = check_clock(
        check,
        offset=sample,
        lag=lag,
        floor=before,
        at=at,
        bucket=bucket,
        resolution=resolution,
    )
    if contradicted:
        floor = DelayFloor()
    if not usable:
        return Answered(floor, check, whole.anchor, replace=-math.inf if contradicted else None)
    lowered = False
    if warm and duration is not None:
        floor = rotated_floor(floor, at, bucket)
        lowered = sample < floor.current
        floor = observe_floor(floor, sample, at, bucket)
    after = floor_value(floor, at, bucket)
    anchor = settled_anchor(
        started,
        done,
        margin,
        offset=offset,
        duration=duration or 0.0,
        floor=after,
        resolution=resolution,
    )
    key = started + offset + (duration or 0.0) + resolution
    replace = after if after < before else None
    return Answered(floor, check, anchor, lowered, key, replace, sample, after == math.inf)


@attrs.frozen
class Adaptation:
    """What one limit learned from refusals; times in the runtime's unit (s, or µs in Redis).

    ``base`` is the effective limit until ``hold_until``, after which it grows
    back (:func:`effective_limit`).
    """

    base: float
    hold_until: float = -math.inf
    hold_windows: int = HOLD_WINDOWS
    decreased_at: float = -math.inf
    extra_margin: float = 0.0


def effective_limit(state: Adaptation, limit: int, per: float, at: float) -> float:
    """The effective limit at *at*: ``base``, grown back by probing since the hold ended."""
    if state.base < limit and at > state.hold_until:
        grown = (at - state.hold_until) / per * PROBE_PER_WINDOW * limit
        return min(float(limit), state.base + grown)
    return state.base


def after_refusal(
    state: Adaptation,
    limit: int,
    per: float,
    *,
    at: float,
    units: int,
    accepted: int,
    recent: int,
) -> Adaptation:
    """The state after a refusal at *at* of a request of *units* units.

    *accepted* is what the window held at *at* (the refused request refunded),
    *recent* what had left it within ``JITTER_TOLERANCE * per`` before.
    """
    effective = effective_limit(state, limit, per, at)
    probing = at > state.hold_until and effective > state.base
    if not probing and accepted + recent + units >= math.floor(effective):
        extra = min(MAX_EXTRA_MARGIN * per, max(2 * state.extra_margin, MIN_EXTRA_MARGIN * per))
        return attrs.evolve(state, extra_margin=extra)
    estimate = effective
    if accepted >= EARLY_FRACTION * effective:
        estimate = ESTIMATE_HEADROOM * accepted
    elif at - state.decreased_at >= per:
        estimate = DECREASE_FACTOR * effective
    hold_windows = state.hold_windows
    if probing:
        hold_windows = min(MAX_HOLD_WINDOWS, hold_windows * 2)
    floor = max(1.0, FLOOR_FRACTION * limit)
    return Adaptation(
        base=max(floor, min(estimate, effective)),
        hold_until=at + hold_windows * per,
        hold_windows=hold_windows,
        decreased_at=at,
        extra_margin=state.extra_margin,
    )
