"""Seeded fault injection, per endpoint."""

from __future__ import annotations

import random
from typing import final

import attrs

__all__ = ["Faults"]


def _rate(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability from 0 to 1, got {value!r}")


@final
@attrs.frozen(kw_only=True)
class Faults:
    """What can go wrong on an endpoint, and how often.

    Each request draws from the emulator's seeded random generator, so a run
    with the same seed and the same requests fails the same way.

    Attributes:
        refuse_503: probability of answering 503 before doing anything (not processed).
        process_then_500: probability of processing the request, then answering 500
            (processed, but the client cannot know).
        drop_connection: probability of processing, sending the response head, then
            dropping the connection (processed; the client sees a protocol error).
        latency: real seconds added before answering (after processing); with a
            client read timeout below it, a processed request times out.
        latency_jitter: up to this many extra real seconds, drawn uniformly.
    """

    refuse_503: float = attrs.field(default=0.0, validator=_rate)
    process_then_500: float = attrs.field(default=0.0, validator=_rate)
    drop_connection: float = attrs.field(default=0.0, validator=_rate)
    latency: float = 0.0
    latency_jitter: float = 0.0

    def delay(self, rng: random.Random) -> float:
        """The latency to add to one response."""
        if self.latency_jitter:
            return self.latency + rng.uniform(0.0, self.latency_jitter)
        return self.latency


NO_FAULTS = Faults()
