"""What an answer means: the JSON object of a success, or the error a failure is.

Responses are read with a cap, so a huge or endless body never exhausts memory
(:data:`MAX_JSON_BYTES`, :data:`MAX_ERROR_BYTES`). Error statuses become
:class:`APIError` subclasses with the documented ``error``/``error_description``
fields and a redacted excerpt. For requests that change state (sends, recalls,
imports), failures after the request was written (read timeouts, dropped
connections, 500/502/504, an unreadable 2xx) become :class:`OutcomeUnknownError`:
they may have been processed.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final, final

import httpx

from ._exceptions import (
    AgoraChatError,
    OutcomeUnknownError,
    RateLimitedError,
    TransportError,
    UnexpectedResponseError,
    api_error_class,
    excerpt,
)
from ._permit import ServerTiming
from ._request import Request

__all__ = [
    "AMBIGUOUS_STATUSES",
    "MAX_ERROR_BYTES",
    "MAX_JSON_BYTES",
    "ResponseBody",
    "ambiguous",
    "declared_length",
    "decode",
    "error_for",
    "parse_retry_after",
    "read_capped",
    "server_timing",
    "unreadable",
]

#: The most bytes read from a successful JSON response before it is refused.
MAX_JSON_BYTES: Final = 16 * 1024 * 1024
#: The most bytes read from an error response (for its error fields and excerpt).
MAX_ERROR_BYTES: Final = 64 * 1024
#: Statuses after which a state-changing request may or may not have been processed.
AMBIGUOUS_STATUSES: Final = frozenset({500, 502, 504})


def _milliseconds(value: object) -> float | None:
    """A finite, non-negative number of milliseconds as seconds; ``None`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value / 1000


def server_timing(
    data: dict[str, Any],
    *,
    new_connection: bool,
    sent: float | None = None,
    streamed: bool = False,
) -> ServerTiming | None:
    """The service's ``timestamp`` and ``duration`` of an answer, if it has a usable
    timestamp (an absurd one can cost speed, never the window: ``_window_rules``)."""
    timestamp = _milliseconds(data.get("timestamp"))
    if not timestamp:
        return None
    duration = _milliseconds(data.get("duration"))
    return ServerTiming(timestamp, duration, new_connection, sent, streamed)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` value (seconds or an HTTP date) as seconds from *now*, if valid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "nan" and "inf" parse as floats, but are no time to wait
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


@final
class ResponseBody:
    """A successful response's body as it arrives: chunks of bytes, and the length it
    announced (``None`` when it announced none, or a compressed one)."""

    __slots__ = ("_response", "length")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.length = declared_length(response)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Read at most *limit* bytes of the body; the flag says whether it was cut.

    A body that declares a small enough ``Content-Length`` and no content encoding is
    read in one go, as httpx would; any other is read chunk by chunk up to the cap.
    """
    declared = declared_length(response)
    if declared is not None and declared <= limit:
        return await response.aread(), False
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def declared_length(response: httpx.Response) -> int | None:
    """The body size the response announces, if it announces one that is the body's size
    (a ``Content-Length`` and no content encoding)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and "content-encoding" not in response.headers:
        return int(declared)
    return None


def ambiguous(request: Request, exc: httpx.TransportError) -> AgoraChatError:
    """A transport failure after the request was written: :class:`TransportError` for a
    read, :class:`OutcomeUnknownError` for a request that changes state."""
    what = f"{request.method} {request.where} failed after it was sent: {type(exc).__name__}"
    error = TransportError(what)
    if request.idempotent:
        return error
    return OutcomeUnknownError(
        what + "; it may or may not have been processed, do not resend blindly",
        cause=error,
    )


def unreadable(request: Request, problem: str, status: int, text: str) -> AgoraChatError:
    """A success the library cannot read: :class:`UnexpectedResponseError` for a read,
    :class:`OutcomeUnknownError` (it was accepted) for a request that changes state."""
    error = UnexpectedResponseError(problem, status_code=status, body_excerpt=excerpt(text))
    if request.idempotent:
        return error
    return OutcomeUnknownError(
        f"{request.method} {request.where} was accepted (HTTP {status}) but {problem}; "
        "its outcome is unknown",
        cause=error,
    )


async def decode(request: Request, response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful response.

    Raises:
        UnexpectedResponseError: the body is not a JSON object (or too large), for a read.
        OutcomeUnknownError: the same for a request that changes state: it was accepted.
    """
    raw, cut = await read_capped(response, MAX_JSON_BYTES)
    problem: str
    if cut:
        problem = f"the response is larger than {MAX_JSON_BYTES} bytes"
    else:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            problem = "the response is not JSON"
        else:
            if isinstance(data, dict):
                return data
            problem = "the response is not a JSON object"
    text = raw[:4096].decode("utf-8", "replace")
    raise unreadable(request, problem, response.status_code, text)


async def error_for(request: Request, response: httpx.Response) -> AgoraChatError:
    """The error an error status means: an :class:`APIError` subclass with the documented
    fields and a redacted excerpt, or :class:`OutcomeUnknownError` when a request that
    changes state got 500/502/504 (it may have been processed)."""
    raw, _ = await read_capped(response, MAX_ERROR_BYTES)
    text = raw.decode("utf-8", "replace")
    error = description = ""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        error = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
    status = response.status_code
    cls = api_error_class(status, error, description)
    kwargs: dict[str, Any] = {
        "status_code": status,
        "error": excerpt(error, 100),
        "description": excerpt(description),
        "body_excerpt": excerpt(text),
        "method": request.method,
        "path": request.where,
    }
    if issubclass(cls, RateLimitedError):
        kwargs["retry_after"] = parse_retry_after(
            response.headers.get("Retry-After"), datetime.now(tz=UTC).timestamp()
        )
    api_error = cls(**kwargs)
    if not request.idempotent and status in AMBIGUOUS_STATUSES:
        return OutcomeUnknownError(
            f"{api_error}; the request may or may not have been processed",
            cause=api_error,
        )
    return api_error
