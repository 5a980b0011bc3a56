"""What the service allows: one :class:`Rate` per limit, the app's :class:`RateLimits`.

The units, the documented defaults and the readings chosen where the reference pages
disagree are explained where they are enforced, at the top of ``_limits.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, timezone
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from ._exceptions import ValidationError
from ._validate import fraction, non_negative, positive, positive_int

__all__ = [
    "BROADCAST_KINDS",
    "DEFAULT_RATE_LIMITS",
    "LIMIT_NAMES",
    "BroadcastKind",
    "BroadcastLimits",
    "CallRule",
    "Claim",
    "DailyLimit",
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


#: Who a broadcast goes to: every user of the app, the online ones, every active chat room.
BroadcastKind: TypeAlias = Literal["users", "online_users", "rooms"]
BROADCAST_KINDS: Final[tuple[BroadcastKind, ...]] = ("users", "online_users", "rooms")


@final
@attrs.frozen
class DailyLimit:
    """At most ``limit`` calls a calendar day (``BroadcastLimits.day_zone``'s days).

    >>> DailyLimit(3)
    DailyLimit(limit=3)
    """

    limit: int = attrs.field(validator=positive_int)


CallRule: TypeAlias = Rate | DailyLimit


def _rules(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(r, Rate | DailyLimit) for r in value):
        raise ValidationError(
            attribute.name,
            "must be a tuple of Rate and DailyLimit, for example "
            f"(Rate(1, per=1800), DailyLimit(3)); got {value!r}",
        )
    if sum(isinstance(rule, DailyLimit) for rule in value) > 1:
        raise ValidationError(attribute.name, "may hold at most one DailyLimit")


def _fixed_zone(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, timezone):
        raise ValidationError(
            attribute.name,
            "must be a datetime.timezone (a fixed offset, such as UTC or "
            f"timezone(timedelta(hours=8))); got {value!r}",
        )


@final
@attrs.frozen(kw_only=True)
class BroadcastLimits:
    """The documented broadcast quotas, per app key (``RateLimits.broadcasts``).

    Lower them when the app key is shared with something that does not use this library's
    limiter, or raise a daily one the service raised for your app (the pages say the daily
    limits can be raised on request; the others cannot)::

        RateLimits(broadcasts=BroadcastLimits(users=(Rate(1, per=1800), DailyLimit(10))))

    ``max_wait``: a broadcast that would fit within this many seconds waits for it; one
    that would not fails at once with :class:`LimitReachedError`. ``margin``: seconds
    added to every window, for a request counted later than it was reserved (its way to
    the service, and how much that varies); a second is nothing to a half hour.
    ``day_zone``: where a calendar day starts over (UTC, as the vendor's newer limits page
    counts).
    """

    users: tuple[CallRule, ...] = attrs.field(
        default=(Rate(1, per=1800), DailyLimit(3)), validator=_rules
    )
    online_users: tuple[CallRule, ...] = attrs.field(
        default=(Rate(1, per=60), DailyLimit(50)), validator=_rules
    )
    rooms: tuple[CallRule, ...] = attrs.field(
        default=(Rate(1, per=1), Rate(10, per=60), DailyLimit(100)), validator=_rules
    )
    max_wait: float = attrs.field(default=60.0, validator=non_negative)
    margin: float = attrs.field(default=1.0, validator=non_negative)
    day_zone: timezone = attrs.field(default=UTC, validator=_fixed_zone)

    def rules(self, kind: BroadcastKind) -> tuple[CallRule, ...]:
        """The rules of broadcasts of *kind*."""
        rules: tuple[CallRule, ...] = getattr(self, kind)
        return rules

    @property
    def day_offset(self) -> float:
        """Seconds east of UTC of ``day_zone``: a day starts at ``-day_offset`` mod 86400."""
        offset = self.day_zone.utcoffset(None)
        return 0.0 if offset is None else offset.total_seconds()


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
    broadcasts: BroadcastLimits = attrs.field(factory=BroadcastLimits)
    """The broadcasts' quotas, counted in calls over minutes, half hours and days
    (:class:`BroadcastLimits`)."""

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
