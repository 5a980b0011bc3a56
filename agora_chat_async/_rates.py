"""What the service allows: one :class:`Rate` per limit, the app's :class:`RateLimits`.

The units, the documented defaults and the readings chosen where the reference pages
disagree are explained where they are enforced, at the top of ``_limits.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from ._exceptions import ValidationError
from ._validate import fraction, non_negative, positive, positive_int

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "LIMIT_NAMES",
    "Claim",
    "LimitName",
    "Priority",
    "Rate",
    "RateLimits",
    "check_claims",
    "check_units",
    "is_bulk",
    "scaled_limits",
]

LimitName: TypeAlias = Literal["users", "groups", "rooms", "send_calls", "other"]
#: Who is waiting: a request a person waits for, or work sent in bulk (``fan_out``).
Priority: TypeAlias = Literal["interactive", "bulk"]
#: One limit a request must respect, and how many of its units the request uses.
Claim: TypeAlias = tuple[LimitName, int]


@final
@attrs.frozen
class Rate:
    """At most ``limit`` units in any interval of ``per`` seconds.

    >>> Rate(6000, per=60)
    Rate(limit=6000, per=60)
    """

    limit: int = attrs.field(validator=positive_int)
    per: float = attrs.field(validator=positive)


def _is_rate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Rate):
        raise ValidationError(
            attribute.name, f"must be a Rate, for example Rate(6000, per=60); got {value!r}"
        )


def _is_rate_or_none(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _is_rate(instance, attribute, value)


@final
@attrs.frozen(kw_only=True)
class RateLimits:
    """The documented per-app-key limits, one :class:`Rate` per limit name.

    The defaults are the documented quotas. Lower them when the app key is
    shared with another service, and widen ``margin`` (seconds added to every
    window) on a network with a lot of jitter::

        RateLimits(users=Rate(3000, per=60), margin=0.05)

    ``send_calls=None`` drops the call-rate limit on sends.
    """

    users: Rate = attrs.field(default=Rate(6000, per=60), validator=_is_rate)
    groups: Rate = attrs.field(default=Rate(20, per=1), validator=_is_rate)
    rooms: Rate = attrs.field(default=Rate(100, per=1), validator=_is_rate)
    other: Rate = attrs.field(default=Rate(100, per=1), validator=_is_rate)
    send_calls: Rate | None = attrs.field(default=Rate(100, per=1), validator=_is_rate_or_none)
    margin: float = attrs.field(default=0.005, validator=non_negative)
    bulk_headroom: float = attrs.field(default=0.01, validator=fraction)
    """The fraction of every limit that bulk work always leaves free for interactive
    requests; 0 for a process that never sends anything but bulk work."""
    bulk_min_share: float = attrs.field(default=0.5, validator=fraction)
    """While bulk work waits, interactive requests may use at most ``1 - bulk_min_share``
    of a window, so that a flood of them never starves bulk work."""

    def rate(self, name: LimitName) -> Rate | None:
        """The :class:`Rate` for the limit called *name*, or ``None`` when it is off."""
        rate: Rate | None = getattr(self, name)
        return rate


#: The documented quotas and a 5 ms margin.
DEFAULT_RATE_LIMITS: Final = RateLimits()
LIMIT_NAMES: Final[tuple[LimitName, ...]] = ("users", "groups", "rooms", "send_calls", "other")


def bulk_limit(limit: int, headroom: float) -> int:
    """The units of a window of *limit* that bulk work may fill: *headroom* of it is left
    free for interactive requests (both limiters, the Redis script and the packer)."""
    return limit - math.floor(headroom * limit)


def scaled_limits(limits: RateLimits, fraction: float) -> RateLimits:
    """*limits* with every limit multiplied by *fraction* (at least 1 unit; windows kept)."""
    scaled: dict[str, Rate | None] = {}
    for name in LIMIT_NAMES:
        rate = limits.rate(name)
        scaled[name] = (
            None if rate is None else Rate(max(1, math.floor(rate.limit * fraction)), per=rate.per)
        )
    return attrs.evolve(limits, **scaled)  # type: ignore[arg-type]


def check_units(name: str, units: int, rate: Rate) -> None:
    """Refuse a claim that could never start under *rate*.

    Raises:
        ValidationError: *units* is not positive or exceeds the limit itself.
    """
    if not 0 < units <= rate.limit:
        raise ValidationError(
            "units",
            f"{units} units can never start under the {name!r} limit of "
            f"{rate.limit} per {rate.per:g} s; send smaller batches",
        )


def check_claims(claims: Sequence[Claim], min_units: int | None) -> bool:
    """Whether the first claim may shrink; refuse a ``min_units`` out of its range.

    Raises:
        ValidationError: ``min_units`` is not between 1 and the first claim's units.
    """
    if min_units is None:
        return False
    if not claims or not 1 <= min_units <= claims[0][1]:
        raise ValidationError(
            "min_units", f"must be between 1 and the first claim's units, got {min_units!r}"
        )
    return True


def is_bulk(priority: Priority) -> bool:
    """Whether *priority* is ``"bulk"``.

    Raises:
        ValidationError: *priority* is neither ``"interactive"`` nor ``"bulk"``.
    """
    if priority not in ("interactive", "bulk"):
        raise ValidationError("priority", f"must be 'interactive' or 'bulk', got {priority!r}")
    return priority == "bulk"
