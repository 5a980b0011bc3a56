"""The exceptions raised by agora-chat-async.

The whole tree, rooted at one class so that ``except AgoraChatError`` catches
everything this library raises on purpose::

    AgoraChatError
    ├── ValidationError            a bad argument; raised before any request is made
    ├── ClientClosedError          the client was closed; nothing more is sent
    ├── LimiterUnavailableError    a shared limiter's store (Redis) could not be reached
    ├── LimiterStoreError          its store refused it for good (permission, password, type)
    ├── JobLeaseError              another worker runs this durable job
    ├── LimitReachedError          a broadcast's half-hourly or daily quota has no room now
    ├── TransportError             no usable HTTP response arrived
    │   └── ConnectError           the connection was never established: nothing was sent
    ├── OutcomeUnknownError        the request may or may not have been processed
    ├── UnexpectedResponseError    a response this library cannot interpret
    ├── SendFailedError            raised by ``SendResult.raise_for_failures()``
    └── APIError                   the service answered with an error status
        ├── BadRequestError        400
        ├── AuthenticationError    401 (and a refused token request)
        ├── ForbiddenError         403
        │   └── EditLimitError        a message was edited as often as the service allows
        ├── FeatureNotEnabledError the app's plan lacks the feature (broadcasts, edits, ...)
        ├── NotFoundError          404
        ├── ConflictError          409
        ├── PayloadTooLargeError   413
        ├── RateLimitedError       429 ``reach_limit``, or 403 "message send reach limit"
        │   └── QuotaExhaustedError   429 ``resource_limited``: the plan's quota is used up
        └── ServerError            5xx

Client-side misuse (``ValidationError``) sits outside the ``APIError`` branch,
so ``except APIError`` never hides a programming mistake.

``OutcomeUnknownError`` is the one to respect in fan-out code: it is raised (or
recorded for a recipient) when a request that changes state was sent but no
trustworthy answer came back, for example a read timeout or a 500/502/504. The
message may have been delivered; retrying it blindly may deliver it twice. The
original error is kept as ``__cause__`` and in :attr:`OutcomeUnknownError.cause`.

No exception message or repr in this module ever contains a token, certificate,
client secret or share-secret: response excerpts are scrubbed of them before
they are stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final, Required, TypedDict, Unpack, final

if TYPE_CHECKING:
    from ._models import SendResult

__all__ = [
    "APIError",
    "AgoraChatError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConflictError",
    "ConnectError",
    "EditLimitError",
    "FeatureNotEnabledError",
    "ForbiddenError",
    "JobLeaseError",
    "LimitReachedError",
    "LimiterUnavailableError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PayloadTooLargeError",
    "QuotaExhaustedError",
    "RateLimitedError",
    "SendFailedError",
    "ServerError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
]

#: How many characters of a response body an error keeps, for the message and ``body_excerpt``.
EXCERPT_CHARS: Final = 300

_SECRET_PATTERNS: Final = (
    # Agora AccessToken2 / easemob tokens and anything after "Bearer ".
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
    re.compile(r"\b007[A-Za-z0-9+/=_-]{20,}"),
    re.compile(r"\bYWMt[A-Za-z0-9+/=_-]{10,}"),
    # Signed query strings (history download URLs) and share-secrets: a key on its own, not the
    # end of a service code ("auth_bad_access_token: Unable to ..." keeps its description).
    re.compile(
        r"(?i)((?<![\w-])(?:signature|ossaccesskeyid|share-secret|client_secret|secret|access_token)"
        r"[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,}]+"
    ),
)


def redact(text: str) -> str:
    """Remove anything that looks like a credential from *text*."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, secret-free, single-line excerpt of a response body."""
    text = redact(" ".join(text.split()))
    if len(text) > limit:
        return text[:limit] + "…"
    return text


class AgoraChatError(Exception):
    """Base class of every error this library raises; catch it to catch them all."""


@final
class ValidationError(AgoraChatError, ValueError):
    """An argument is invalid; nothing was sent.

    ``field`` names the offending argument or wire field (for example
    ``"body.customEvent"`` or ``"to[3]"``).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ClientClosedError(AgoraChatError):
    """The client was closed (``aclose()``) before this request was sent; nothing was sent.

    Create a new client to send more.
    """


class LimiterUnavailableError(AgoraChatError):
    """The shared limiter's store (Redis) stayed unreachable; nothing was sent.

    Raised instead of sending without a limit, after retrying for ``unavailable_timeout``
    seconds: a lost connection, a timeout, a Redis loading its data, busy with a long
    script, read-only after a failover, or a cluster re-sharding. Retry later, or configure
    a fallback.
    """


class LimiterStoreError(AgoraChatError):
    """The shared limiter's store (Redis) refused it for a reason waiting will not mend
    (a user without a permission, wrong credentials, a key of another type under the
    limiter's names); nothing was sent. The message names the fix.
    """


class JobLeaseError(AgoraChatError):
    """Another worker holds the lease of this durable job, or took it over; nothing was sent.

    Two workers never run one job at once: run it when the other is done (or its lease has
    expired, if it died), or run another job.
    """


@final
class LimitReachedError(AgoraChatError):
    """A quota counted over a long period (a broadcast's half hour or day) has no room for
    this call now, nor within ``BroadcastLimits.max_wait``; nothing was sent.

    ``available_at`` is when the call could be made (an aware UTC ``datetime``); ``limit``
    describes the quota. Try again then, or raise the quota (``RateLimits.broadcasts``) if
    the service raised it for your app.
    """

    def __init__(self, limit: str, available_at: datetime) -> None:
        self.limit = limit
        self.available_at = available_at
        super().__init__(
            f"{limit}: no call is left now; nothing was sent. The next one can be made at "
            f"{available_at.isoformat(timespec='seconds')}"
        )


class TransportError(AgoraChatError):
    """No usable HTTP response arrived (network failure, timeout, protocol error)."""


@final
class ConnectError(TransportError):
    """The connection could not be established, so the request was certainly not sent.

    Safe to retry.
    """


@final
class OutcomeUnknownError(AgoraChatError):
    """A state-changing request was sent, but whether it was processed is unknown.

    Raised for read timeouts and dropped connections after the request was
    written, for 500/502/504 answers, and for a success status whose body cannot
    be read. The message may have been delivered: retrying may deliver it twice.
    ``cause`` is the underlying error.
    """

    def __init__(self, message: str, *, cause: AgoraChatError | None = None) -> None:
        self.cause = cause
        super().__init__(message)


@final
class UnexpectedResponseError(AgoraChatError):
    """The service answered, but the answer is not what the API documents.

    ``status_code`` is the HTTP status and ``body_excerpt`` a short, redacted
    excerpt of what came back.
    """

    def __init__(self, message: str, *, status_code: int, body_excerpt: str = "") -> None:
        self.status_code = status_code
        self.body_excerpt = body_excerpt
        text = f"{message} (HTTP {status_code})"
        if body_excerpt:
            text += f": {body_excerpt}"
        super().__init__(text)


@final
class SendFailedError(AgoraChatError):
    """Some recipients of a send were not delivered or have an unknown outcome.

    Raised by :meth:`SendResult.raise_for_failures`; ``result`` is the whole
    :class:`SendResult`, so nothing is lost by raising.
    """

    def __init__(self, result: SendResult) -> None:
        self.result = result
        failed, unknown = len(result.failed), len(result.unknown)
        first: AgoraChatError | None = next(
            iter(result.failed.values()), next(iter(result.unknown.values()), None)
        )
        message = (
            f"{failed} recipient(s) failed and {unknown} have an unknown outcome "
            f"({len(result.message_ids)} delivered)"
        )
        if first is not None:
            message += f"; first error: {first}"
        super().__init__(message)


class APIErrorFields(TypedDict, total=False):
    """The keyword arguments of :class:`APIError` (``status_code`` is required in practice)."""

    status_code: Required[int]
    error: str
    description: str
    body_excerpt: str
    method: str
    path: str


class APIError(AgoraChatError):
    """The service answered with an error status.

    Attributes: ``status_code``; ``error`` and ``description``, the documented
    ``error`` and ``error_description`` fields of the error body (empty when
    absent); ``body_excerpt``, a short redacted excerpt of the body;
    ``method`` and ``path`` of the request (path without host or query).
    """

    def __init__(
        self,
        *,
        status_code: int,
        error: str = "",
        description: str = "",
        body_excerpt: str = "",
        method: str = "",
        path: str = "",
    ) -> None:
        self.status_code = status_code
        self.error = error
        self.description = description
        self.body_excerpt = body_excerpt
        self.method = method
        self.path = path
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" for {self.method} {self.path}" if self.method else ""
        detail = ": ".join(part for part in (self.error, self.description) if part)
        if not detail:
            detail = self.body_excerpt or "no error body"
        return f"HTTP {self.status_code}{where}: {redact(detail)}. {self._advice()}".rstrip()

    def _advice(self) -> str:
        return ""


@final
class BadRequestError(APIError):
    """400: the service rejected the request's content; fix the request, do not retry it."""

    def _advice(self) -> str:
        return "Check the request fields against the API reference."


@final
class AuthenticationError(APIError):
    """401, or a refused token request: the credentials or the token were not accepted."""

    def _advice(self) -> str:
        return "Check the org/app names and the credentials given to `auth=`."


class ForbiddenError(APIError):
    """403 for a reason other than a rate limit."""


@final
class EditLimitError(ForbiddenError):
    """403: the message was edited as many times as the service allows (10)."""

    def _advice(self) -> str:
        return "The message cannot be edited again; send a new one."


@final
class FeatureNotEnabledError(APIError):
    """The app's plan does not include the feature, or it was not switched on: broadcasts,
    message edits, roaming messages (403, or 400 for roaming, as the pages document)."""

    def _advice(self) -> str:
        return "Ask the service's sales team to enable the feature for this app."


@final
class NotFoundError(APIError):
    """404: the org, app, user, file or resource does not exist."""


@final
class ConflictError(APIError):
    """409: another call changed the same thing at the same time (an edit of one message)."""

    def _advice(self) -> str:
        return "Read the current state and make the change again, one call at a time."


@final
class PayloadTooLargeError(APIError):
    """413: the request body is over the service's 5 KB limit; split it and retry."""


class RateLimitedError(APIError):
    """The service refused the request for exceeding a rate limit; it was not processed.

    The service documents 429 ``reach_limit`` for call rates and 403 with a
    "reach limit" description for message quotas; both map here.
    ``retry_after`` is the server's ``Retry-After`` in seconds, or ``None``
    (the service does not document one).
    """

    def __init__(
        self,
        *,
        retry_after: float | None = None,
        budget: float | None = None,
        **fields: Unpack[APIErrorFields],
    ) -> None:
        self.retry_after = retry_after
        #: The retry budget (``RetryPolicy.rate_limit_budget``) that ran out, if one did.
        self.budget = budget
        super().__init__(**fields)

    def _advice(self) -> str:
        if self.budget is not None:
            return (
                f"Still refused after retrying for {self.budget:g} s "
                "(RetryPolicy.rate_limit_budget) while the limiter adapted: the quota is "
                "smaller than RateLimits says, or shared with another sender. Lower "
                "RateLimits, or raise the budget."
            )
        if self.retry_after is not None:
            return f"Retry after {self.retry_after:g} s."
        return "Slow down; retry later."


@final
class QuotaExhaustedError(RateLimitedError):
    """429 ``resource_limited``: the plan's quota is used up; or 403: a broadcast's daily
    limit is (``broadcast message limit exceeded``, ...). Retrying soon will not help."""

    def _advice(self) -> str:
        if "broadcast" in self.description.lower():
            return (
                "The day's broadcasts of this kind are used up: send the next one tomorrow, "
                "or ask the service to raise the daily limit (and BroadcastLimits with it)."
            )
        return "The app's plan quota is exhausted; raise it or wait for it to reset."


@final
class ServerError(APIError):
    """5xx: the service failed. A 503 means the request was not processed."""


_BY_STATUS: Final[Mapping[int, type[APIError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
}
#: (statuses, words of the error or its description, the error class), first match wins.
_BY_DESCRIPTION: Final[tuple[tuple[tuple[int, ...], str, type[APIError]], ...]] = (
    # A feature the app lacks (broadcasts, edits, roaming; roaming's is a 400).
    ((400, 403), "service is unopened", FeatureNotEnabledError),
    ((400, 403), "feature is not open", FeatureNotEnabledError),
    ((400, 403), "not open message roaming", FeatureNotEnabledError),
    # A broadcast's daily limit ("broadcast message limit exceeded", "online user ...").
    ((403,), "broadcast limit exceeded", QuotaExhaustedError),
    ((403,), "broadcast message limit exceeded", QuotaExhaustedError),
    ((403,), "edit limit", EditLimitError),
    ((403, 429), "reach limit", RateLimitedError),
)


def api_error_class(status_code: int, error: str, description: str) -> type[APIError]:
    """Choose the :class:`APIError` subclass for a status and the documented error fields."""
    if status_code == 429 and error == "resource_limited":
        return QuotaExhaustedError
    text = f"{error} {description}".lower()
    for statuses, words, cls in _BY_DESCRIPTION:
        if status_code in statuses and words in text:
            return cls
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, APIError)
