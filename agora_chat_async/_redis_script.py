"""The Redis limiter's script (``_redis_limiter.lua``) and what goes in and out of a call."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any, Final

import attrs

from ._window_rules import FLOOR_BUCKET, DelayFloor, lua_constants

__all__ = [
    "BUCKET_US",
    "MICROS",
    "SCRIPT",
    "SEEN_TTL_MS",
    "Carried",
    "Decision",
    "ScriptClaim",
    "read_floor",
]

SCRIPT: Final = lua_constants() + resources.files(__package__).joinpath(
    "_redis_limiter.lua"
).read_text("utf-8")
#: How long the "this Redis has seen this app key" marker lives without admissions.
SEEN_TTL_MS: Final = 7 * 24 * 3600 * 1000
MICROS: Final = 1_000_000
BUCKET_US: Final = FLOOR_BUCKET * MICROS


def _time_field(value: bytes | str | int, default: float) -> float:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return float(text) if text else default


def read_floor(current: bytes | str, since: bytes | str, previous: bytes | str) -> DelayFloor:
    """The shared floor from the script's reply (``''`` for an infinite field)."""
    return DelayFloor(
        _time_field(current, math.inf),
        _time_field(since, -math.inf),
        _time_field(previous, math.inf),
    )


@attrs.frozen
class ScriptClaim:
    """One claim on its way through the script: limit index, units, id, units it needs."""

    index: int
    units: int
    id: str
    need: int
    first: bool


@attrs.frozen
class Decision:
    """The script's answer: start in ``delay`` s with ``granted`` units per claim."""

    delay: float
    granted: list[int]
    #: When the claims start, in Redis microseconds.
    start_us: int
    #: The local time the call was made (an answer's time is measured from it).
    sent: float
    #: The position (from 1) of the claim left with the least room; 0 without claims.
    binding: int


@attrs.define
class Carried:
    """What a process tells the script with its next call (an admission, or a flush)."""

    #: Claims whose requests are on their way (held past their window until answered).
    flying: list[tuple[int, str, float]] = attrs.field(factory=list)
    #: Warm answers' forward offsets (Redis microseconds) and when they came (local).
    observations: list[tuple[float, float]] = attrs.field(factory=list)
    #: Moved anchors: limit index, claim id, new anchor in microseconds of Redis time, and
    #: 1 if it may be earlier than the anchor it replaces (the first floor), else 0.
    reports: list[tuple[int, str, int, int]] = attrs.field(factory=list)
    #: Answers that moved nothing (anchor 0): the script stops holding their claims.
    answered: list[tuple[int, str, int, int]] = attrs.field(factory=list)
    refunds: list[tuple[int, str]] = attrs.field(factory=list)
    #: Refusals: limit index, units, local time of the refusal.
    penalties: list[tuple[int, int, float]] = attrs.field(factory=list)

    @property
    def urgent(self) -> bool:
        """Whether other processes should hear of it now (a flush), not with the next call."""
        return bool(self.reports or self.refunds or self.penalties or self.observations)

    def __bool__(self) -> bool:
        return self.urgent or bool(self.flying or self.answered)

    def take(self) -> Carried:
        """Everything queued, leaving this empty."""
        taken = attrs.evolve(self)
        for field in attrs.fields(Carried):
            setattr(self, field.name, [])
        return taken

    def put_back(self, taken: Carried) -> None:
        """*taken* did not reach the script (or may not have): carried by the next call."""
        for field in attrs.fields(Carried):
            getattr(self, field.name)[:0] = getattr(taken, field.name)

    def args(self, now: float) -> list[Any]:
        """The script's arguments for all of it, in its order, at local time *now*."""
        args: list[Any] = [len(self.flying)]
        for index, claim_id, marked in self.flying:
            args += [index, claim_id, max(0, round((now - marked) * MICROS))]
        args.append(len(self.observations))
        for offset, observed in self.observations:
            args += [repr(offset), max(0, round((now - observed) * MICROS))]
        reports = self.reports + self.answered
        args.append(len(reports))
        for report in reports:
            args += report
        args.append(len(self.refunds))
        for refund in self.refunds:
            args += refund
        args.append(len(self.penalties))
        for index, units, refused in self.penalties:
            args += [index, units, max(0, round((now - refused) * MICROS))]
        return args
