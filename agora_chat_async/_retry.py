"""Retries: what is retried, how long to wait, and what is never retried.

A request is retried only when it was certainly not processed:

- the connection was never established (:class:`ConnectError`);
- the service refused it for a rate limit (:class:`RateLimitedError`: a 429 with
  any error but ``resource_limited``, or 403 "message send reach limit");
- the service answered 503.

Refusals for a rate limit are progress, not failure: the limiter adapts to each one,
so they are retried for as long as ``rate_limit_budget`` seconds from the first
refusal, however many it takes, and only then raised (the error names the budget).
Every other retryable failure is retried ``attempts`` times.

Each retry takes a new limiter slot. The wait is the server's ``Retry-After``
when it sent one, otherwise an exponential backoff with full jitter
(``base * 2**attempt``, at most ``max_backoff``, times a random factor in
[0.5, 1)), read from the client's clock.

Reads (downloads, history) change nothing, so every transient failure of theirs is
retried too: read timeouts, dropped connections, 500/502/504. A download already
being written is not restarted.

Never retried: for requests that change state, anything whose outcome is
unknown (a read timeout after sending, a dropped connection, 500/502/504), which
would risk delivering a message twice; refusals that a retry cannot fix (400,
401 after one token refresh, 403, 404, 413). A 429 ``resource_limited`` (the plan's
quota is used up) is retried only ``quota_attempts`` times, each after
``max_backoff``, since retrying soon cannot help; then it is raised as
:class:`QuotaExhaustedError`, which also stops the rest of a fan-out.
"""

from __future__ import annotations

import random
from typing import Final, final

import attrs

from ._exceptions import (
    AgoraChatError,
    ConnectError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
)
from ._validate import non_negative, non_negative_int

__all__ = ["DEFAULT_RETRY_POLICY", "RetryPolicy", "is_retryable"]


@final
@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often, and after how long, requests that were certainly not processed are retried.

    >>> RetryPolicy(attempts=3, base=0.5, max_backoff=10)
    RetryPolicy(attempts=3, base=0.5, max_backoff=10, quota_attempts=2, rate_limit_budget=300.0)

    ``RetryPolicy(attempts=0, quota_attempts=0, rate_limit_budget=0)`` switches retries off.
    """

    attempts: int = attrs.field(default=5, validator=non_negative_int)
    base: float = attrs.field(default=0.5, validator=non_negative)
    max_backoff: float = attrs.field(default=30.0, validator=non_negative)
    quota_attempts: int = attrs.field(default=2, validator=non_negative_int)
    """Retries after 429 ``resource_limited`` (the plan's quota), each after ``max_backoff``."""
    rate_limit_budget: float = attrs.field(default=300.0, validator=non_negative)
    """Seconds, from a request's first rate-limit refusal, during which it keeps being
    retried while the limiter adapts; then its :class:`RateLimitedError` is raised."""

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number *attempt* (0 for the first retry)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return min(self.max_backoff, self.base * 2.0**attempt) * rng.uniform(0.5, 1.0)


#: Five retries, backing off from 0.5 s to at most 30 s.
DEFAULT_RETRY_POLICY: Final = RetryPolicy()


def is_retryable(error: AgoraChatError) -> bool:
    """True for errors after which the request was certainly not processed and may work later."""
    if isinstance(error, QuotaExhaustedError):
        return False
    if isinstance(error, RateLimitedError | ConnectError):
        return True
    return isinstance(error, ServerError) and error.status_code == 503
