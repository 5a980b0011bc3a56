"""A limiter's grant (:class:`Permit`), and what an answer tells of when it was counted
(:class:`ServerTiming`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import final

import attrs

from ._rates import LimitName

__all__ = ["Permit", "ServerTiming"]


@final
@attrs.frozen
class ServerTiming:
    """When the service had a request, read from its answer's ``timestamp`` and ``duration``.

    ``timestamp`` is when the answer left, in seconds of the service's clock (Unix time);
    ``duration`` the seconds the service spent on the request, ``None`` when the answer did
    not say; ``new_connection`` that the request was the first on its connection (its
    forward delay may include a handshake, the client's or a proxy's); ``sent`` when its
    body began to leave (after its headers), on the client's clock (``None`` when the
    transport does not say: an ASGI or mock transport), which tells the network's delay
    apart from the client's own (a busy event loop, a connection being opened);
    ``streamed`` that its body left in many writes (a file's upload), so its forward delay
    includes the upload.
    """

    timestamp: float
    duration: float | None = None
    new_connection: bool = False
    sent: float | None = None
    streamed: bool = False

    @property
    def arrival(self) -> float:
        """When the request reached the service, on its clock (the answer's time if unsaid)."""
        return self.timestamp - (self.duration or 0.0)

    @property
    def tells_floor(self) -> bool:
        """Whether the request's forward delay is an honest sample of the network's: it
        came on a connection that had answered before, its body was not streamed, and the
        service said how long it took."""
        return self.duration is not None and not self.new_connection and not self.streamed


class Permit:
    """Capacity granted by :meth:`Limiter.acquire`.

    ``units`` is how many units of the first claim were granted: all of them, or
    fewer when the claim was allowed to shrink (``min_units``).

    Call :meth:`settle` when the request's answer has arrived (with the answer's
    :class:`ServerTiming` when it has one), or the attempt ended after it may have
    reached the server, and :meth:`refund` instead if it certainly never reached the
    server, or was refused and so not counted.
    """

    __slots__ = ("_refund", "_sending", "_settle", "binding", "units")

    def __init__(
        self,
        refund: Callable[[], object] | None = None,
        *,
        units: int = 0,
        settle: Callable[[ServerTiming | None], object] | None = None,
        binding: LimitName | None = None,
        sending: Callable[[], object] | None = None,
    ) -> None:
        self._refund = refund
        self._settle = settle
        self._sending = sending
        self.units = units
        #: The limit whose window was nearest its limit when the request was admitted:
        #: the one a rate-limit refusal of this request is blamed on.
        self.binding = binding

    def sending(self) -> None:
        """The request is leaving now: until :meth:`settle` or :meth:`refund`, its claims
        stay in their windows even past them (the service may count it as late as its
        answer), at most ``UNANSWERED_HOLD`` seconds more. Idempotent."""
        sending, self._sending = self._sending, None
        if sending is not None:
            sending()

    def refund(self) -> None:
        """Give the capacity back. Only for a request the server did not count."""
        refund, self._refund = self._refund, None
        self._settle = self._sending = None
        if refund is not None:
            refund()

    def settle(self, timing: ServerTiming | None = None) -> None:
        """The answer has arrived: the claims stay in the window for what is uncertain.

        The service may count a request at any time until it answers. With *timing*,
        the claims are charged the time from their start to when the service can
        have counted them, beyond the earliest a request can reach it now; without,
        the whole round trip (``_window_rules.settled_anchor``). Idempotent: the
        first call counts.
        """
        settle, self._settle = self._settle, None
        self._sending = None
        if settle is not None:
            settle(timing)
