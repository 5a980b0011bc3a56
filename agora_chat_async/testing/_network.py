"""A network between the client and the emulator: one-way delays, jitter, handshakes."""

from __future__ import annotations

import random
from typing import Final, Self, final

import attrs

__all__ = ["LOOPBACK", "Network"]


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be seconds >= 0, got {value!r}")


@final
@attrs.frozen(kw_only=True)
class Network:
    """The delays a request meets on its way to the emulator and its answer on the way back.

    A request waits ``forward`` seconds (plus up to ``jitter``, drawn uniformly) before the
    emulator counts and handles it; its answer, stamped with the emulator's ``timestamp``
    and ``duration``, waits ``back`` seconds (plus up to ``jitter``) before it leaves. With
    ``handshake``, the first request on a connection waits one round trip more, as a TCP
    handshake over that network would. Delays are in the emulator's clock (real seconds at
    ``time_scale=1``) and drawn from its seeded random generator.

    >>> Network.round_trip(0.1, jitter=0.1)  # 50 ms each way, plus up to 10 ms each
    Network(forward=0.05, back=0.05, jitter=0.01, handshake=True)
    """

    forward: float = attrs.field(default=0.0, validator=_non_negative)
    back: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    handshake: bool = True

    @classmethod
    def round_trip(cls, seconds: float, *, jitter: float = 0.1, handshake: bool = True) -> Self:
        """A symmetric network of *seconds* round trip, each way jittered by up to
        *jitter* (a fraction) of the round trip: ``round_trip(0.3)`` waits 150 to 180 ms
        each way.

        Raises:
            ValueError: a delay or the jitter is negative.
        """
        if not jitter >= 0:
            raise ValueError(f"jitter must be a fraction >= 0, got {jitter!r}")
        one_way = seconds / 2
        return cls(forward=one_way, back=one_way, jitter=jitter * seconds, handshake=handshake)

    def forward_delay(self, rng: random.Random, *, new_connection: bool) -> float:
        """The delay before one request is counted."""
        delay = self.forward + (rng.uniform(0.0, self.jitter) if self.jitter else 0.0)
        if new_connection and self.handshake:
            delay += self.forward + self.back
        return delay

    def back_delay(self, rng: random.Random) -> float:
        """The delay before one answer leaves."""
        return self.back + (rng.uniform(0.0, self.jitter) if self.jitter else 0.0)


#: No delay at all.
LOOPBACK: Final = Network(handshake=False)
