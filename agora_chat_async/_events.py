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
    """A request waited for the limiter; ``waited`` is in seconds of the client's clock."""

    path: str
    claims: tuple[tuple[str, int], ...]
    waited: float


Event: TypeAlias = RequestSent | RateLimited | Retrying | BatchSplit | LimiterWait
EventHook: TypeAlias = Callable[[Event], None]
