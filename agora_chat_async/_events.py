"""Events: what the client did and why, for metrics and debugging.

Pass ``on_event=`` to :class:`AgoraChatClient` to receive them (a plain
callable, called synchronously; keep it fast and never raise from it). Each is
also logged on the ``agora_chat_async`` logger: request lines at DEBUG, waits,
refusals, retries and splits at INFO. None carries a token, a secret or a body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, final

import attrs

__all__ = [
    "BatchSplit",
    "Event",
    "EventHook",
    "LimiterWait",
    "RateLimited",
    "RecipientsSettled",
    "RequestSent",
    "Retrying",
]


@final
@attrs.frozen(kw_only=True)
class RequestSent:
    """A request got an answer (any status). ``elapsed`` is in seconds of real time."""

    method: str
    path: str
    status_code: int
    elapsed: float
    attempt: int


@final
@attrs.frozen(kw_only=True)
class RateLimited:
    """The service refused a request for a rate limit; the limiter slows down."""

    method: str
    path: str
    status_code: int
    error: str
    retry_after: float | None
    limits: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class Retrying:
    """A request that was certainly not processed (or, on request, an unknown one) is retried."""

    method: str
    path: str
    attempt: int
    delay: float
    reason: str


@final
@attrs.frozen(kw_only=True)
class BatchSplit:
    """A batch answered 413 was split in two and each half is sent on its own."""

    path: str
    size: int


@final
@attrs.frozen(kw_only=True)
class LimiterWait:
    """A request waited for the limiter; ``waited`` is in seconds of the client's clock.

    ``priority``: ``"interactive"`` or ``"bulk"`` (``send_*(priority=...)``, fan-outs)."""

    path: str
    claims: tuple[tuple[str, int], ...]
    waited: float
    priority: str = "interactive"


@final
@attrs.frozen(kw_only=True)
class RecipientsSettled:
    """One request of a send settled its recipients: how many were delivered, certainly
    failed, or have an unknown outcome (the counts of its :class:`SendResult`'s buckets).

    ``family`` is the endpoint family: ``"users"``, ``"groups"``, ``"rooms"``,
    ``"group_members"`` or ``"room_members"``. The events of one send add up to its
    ``SendResult`` (a fan-out's, a durable fan-out's run, a single send's); a request
    cancelled before its answer settles nothing."""

    family: str
    delivered: int
    failed: int
    unknown: int


Event: TypeAlias = (
    RequestSent | RateLimited | Retrying | BatchSplit | LimiterWait | RecipientsSettled
)
EventHook: TypeAlias = Callable[[Event], None]
