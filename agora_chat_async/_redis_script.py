"""The Redis limiter's script (``_redis_limiter.lua``) and what goes in and out of a call."""

from __future__ import annotations

import math
from importlib import resources
from typing import Final

import attrs

from ._window_rules import FLOOR_BUCKET, DelayFloor, lua_constants

__all__ = [
    "BUCKET_US",
    "MICROS",
    "SCRIPT",
    "SEEN_TTL_MS",
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
