"""The request pipeline: every request the client makes goes through :class:`Transport`.

One path for all of them::

    limiter slot -> auth token -> send -> read (capped) -> decode -> error mapping
         ^              ^                                       |
         |              +------ one retry after a 401 ----------+
         +---- retries of what was certainly not processed -----+  (see _retry.py)

- **Limiter**: :meth:`Limiter.acquire` with the request's claims (recipients or
  targets and one call for sends, one call elsewhere), before every attempt; the
  permit is refunded when the attempt never reached the server, and the limits
  are penalized when the service refuses it for a rate limit anyway.
- **Auth**: the provider's current token; on a 401 the provider is told, and
  the request is retried once if it says a new token may help.
- **Send and read**: responses are streamed and read with a cap, so a huge or
  endless body never exhausts memory (:data:`MAX_JSON_BYTES`,
  :data:`MAX_ERROR_BYTES`).
- **Error mapping**: error statuses become :class:`APIError` subclasses with the
  documented ``error``/``error_description`` fields and a redacted excerpt.
  For requests that change state (sends, recalls, imports), failures after the
  request was written (read timeouts, dropped connections, 500/502/504, an
  unreadable 2xx) become :class:`OutcomeUnknownError`: they may have been
  processed. A connection that was never established is :class:`ConnectError`:
  nothing was sent.

Nothing here logs headers or bodies; URLs are logged without their query.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final, NoReturn, final
from urllib.parse import urlsplit

import attrs
import httpx

from ._auth import Auth
from ._clock import Clock
from ._converter import TokenRequest, TokenResponse, converter, dumps
from ._events import Event, EventHook, LimiterWait, RateLimited, RequestSent, Retrying
from ._exceptions import (
    AgoraChatError,
    APIError,
    AuthenticationError,
    ClientClosedError,
    ConnectError,
    OutcomeUnknownError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    api_error_class,
    excerpt,
)
from ._limits import Claim, Limiter, LimitName, Permit, Priority
from ._logging import install_redaction, logger
from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy, is_retryable

__all__ = ["MAX_ERROR_BYTES", "MAX_JSON_BYTES", "Request", "Transport", "declared_length"]


#: The most bytes read from a successful JSON response before it is refused.
MAX_JSON_BYTES: Final = 16 * 1024 * 1024
#: The most bytes read from an error response (for its error fields and excerpt).
MAX_ERROR_BYTES: Final = 64 * 1024
#: Parsed API addresses kept; paths that name a user or a message make more.
_MAX_CACHED_URLS: Final = 256
#: Statuses after which a state-changing request may or may not have been processed.
_AMBIGUOUS_STATUSES: Final = frozenset({500, 502, 504})


@final
@attrs.frozen(kw_only=True)
class Request:
    """One API request, described before it is sent.

    ``json`` is a wire shape encoded by the converter; ``content``, the same already
    encoded (the sender measures the bytes before sending them).
    ``path`` is relative to ``{base_url}/{org}/{app}``; ``url`` overrides it with
    an absolute address (history files), which gets neither the limiter nor the
    ``Authorization`` header; ``authenticated=False`` (the token endpoint) keeps the
    limiter but sends no token. ``idempotent`` is False for requests that change
    state: their ambiguous failures become :class:`OutcomeUnknownError`, retried
    only when ``retry_unknown`` is set.
    """

    method: str
    path: str = ""
    url: str | None = None
    claims: tuple[Claim, ...] = (("other", 1),)
    json: object = None
    content: bytes | None = None
    files: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    idempotent: bool = True
    retry_unknown: bool = False
    authenticated: bool = True
    priority: Priority = "interactive"

    @property
    def where(self) -> str:
        """The path, or the URL without its query, for messages and events."""
        return self.path or _safe_url(self.url or "")


def _parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
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


def _exceeded(claims: tuple[Claim, ...], binding: LimitName | None) -> tuple[Claim, ...]:
    """Which of a request's claims a rate-limit refusal is blamed on.

    Not the status: whether the service says 429 ``reach_limit`` or 403 "reach limit"
    for an exceeded message quota is not settled by its pages. The claim whose window
    was left with the least room, relative to its limit, when the request was admitted
    (:attr:`Permit.binding`) is the one the refusal pressed on; without a permit, the
    request's first claim.
    """
    for claim in claims:
        if claim[0] == binding:
            return (claim,)
    return claims[:1]


def _api_headers(token: str | None) -> tuple[httpx.Headers, httpx.Headers]:
    """The headers of an API request without and with a JSON body."""
    plain = {"Accept": "application/json"}
    if token is not None:
        plain["Authorization"] = f"Bearer {token}"
    return httpx.Headers(plain), httpx.Headers({**plain, "Content-Type": "application/json"})


def _safe_url(url: httpx.URL | str) -> str:
    parts = urlsplit(str(url))
    return parts._replace(query="", fragment="").geturl()


@attrs.define
class _Tries:
    """One request's failed attempts so far."""

    #: Failures other than rate-limit refusals (each retried at most RetryPolicy.attempts).
    retries: int = 0
    #: Rate-limit refusals, retried while RetryPolicy.rate_limit_budget lasts.
    refusals: int = 0
    refused_since: float | None = None

    @property
    def attempts(self) -> int:
        return self.retries + self.refusals


@final
class Transport:
    """The pipeline shared by all endpoints of one :class:`AgoraChatClient`."""

    __slots__ = (
        "_auth",
        "_base",
        "_clock",
        "_closed",
        "_http",
        "_json_headers",
        "_limiter",
        "_on_event",
        "_owns_http",
        "_plain_headers",
        "_retry",
        "_rng",
        "_token",
        "_urls",
    )

    def __init__(
        self,
        *,
        base: str,
        auth: Auth,
        limiter: Limiter,
        http: httpx.AsyncClient,
        owns_http: bool,
        clock: Clock,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        on_event: EventHook | None = None,
    ) -> None:
        self._base = base
        self._on_event = on_event
        self._retry = retry
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not security
        self._auth = auth
        self._limiter = limiter
        self._http = http
        self._owns_http = owns_http
        self._clock = clock
        self._urls: dict[str, httpx.URL] = {}
        self._closed = False
        self._token: str | None = None  # the token of the cached headers
        self._plain_headers, self._json_headers = _api_headers(None)
        install_redaction()

    @property
    def clock(self) -> Clock:
        """The clock the limiter and the auth providers read."""
        return self._clock

    @property
    def base(self) -> str:
        """``{base_url}/{org_name}/{app_name}``."""
        return self._base

    async def aclose(self) -> None:
        """Refuse further requests; close the HTTP client if this transport created it.

        Requests not yet sent fail with :class:`ClientClosedError`; requests in flight
        when a created HTTP client closes end as their transport failure maps.
        """
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    # -- the token endpoint, used by ClientCredentials ------------------------------------------

    async def request_token(
        self, client_id: str, client_secret: str, ttl: int | None
    ) -> tuple[str, int]:
        """``POST /token`` with the client-credentials grant; no Authorization header.

        Raises:
            AuthenticationError: the service refused the credentials (any 4xx).
            AgoraChatError: the request failed otherwise.
        """
        request = Request(
            method="POST",
            path="/token",
            authenticated=False,
            json=TokenRequest(
                grant_type="client_credentials",
                client_id=client_id,
                client_secret=client_secret,
                ttl=ttl,
            ),
        )
        try:
            data = await self.request(request)
        except APIError as exc:
            if 400 <= exc.status_code < 500 and not isinstance(exc, RateLimitedError):
                raise AuthenticationError(
                    status_code=exc.status_code,
                    error=exc.error,
                    description=exc.description or "the token request was refused",
                    body_excerpt=exc.body_excerpt,
                    method=exc.method,
                    path=exc.path,
                ) from None
            raise
        try:
            token = converter.structure(data, TokenResponse)
        except Exception as exc:
            raise UnexpectedResponseError(
                "the token response has no access_token/expires_in", status_code=200
            ) from exc
        return token.access_token, token.expires_in

    # -- the pipeline ----------------------------------------------------------------------------

    async def request(self, request: Request, *, permit: Permit | None = None) -> dict[str, Any]:
        """Send *request* and return its decoded JSON object.

        *permit*, from :meth:`acquire` with the request's claims, is used for the first
        attempt instead of acquiring one (the sender sized the request from it); it is
        refunded if that attempt is never sent.

        Raises:
            APIError: the service answered with an error status (subclass by status).
            ConnectError: the connection was never established.
            TransportError: an idempotent request got no usable response.
            OutcomeUnknownError: a state-changing request may have been processed.
            UnexpectedResponseError: the answer is not a JSON object.
        """
        response = await self._open(request, permit)
        try:
            return await self._decode(request, response)
        except httpx.TransportError as exc:
            raise self._ambiguous(request, exc) from None
        finally:
            await response.aclose()

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[httpx.Response]:
        """Send *request* and yield the successful response with its body unread.

        Error statuses are raised before anything is yielded, after one token
        refresh on a 401 and after the retries of :class:`RetryPolicy` for
        requests that were certainly not processed. A transport failure while
        the body is read is raised as :meth:`request` raises it.
        """
        response = await self._open(request)
        try:
            yield response
        except httpx.TransportError as exc:
            raise self._ambiguous(request, exc) from None
        finally:
            await response.aclose()

    async def _open(self, request: Request, given: Permit | None = None) -> httpx.Response:
        """The successful response to *request*, body unread; the caller closes it.

        Every attempt, retry and refusal of the pipeline happens here.
        """
        tries = _Tries()
        refreshed = False
        while True:
            permit: Permit | None = None
            try:
                token: str | None = None
                if request.url is None:
                    if request.authenticated:
                        token = await self._auth.get_token(self)
                    if given is not None:
                        permit, given = given, None
                    else:
                        permit = await self.acquire(
                            request.claims, where=request.where, priority=request.priority
                        )
                response = await self._send(request, token, permit, attempt=tries.attempts)
                if response.status_code < 400:
                    return response
                try:
                    if (
                        response.status_code == 401
                        and token is not None
                        and not refreshed
                        and self._auth.token_rejected(token)
                    ):
                        refreshed = True
                        logger.info(
                            "401 for %s %s; renewing the token and retrying once",
                            request.method,
                            request.where,
                        )
                        continue
                    raise await self._error(request, response)
                except httpx.TransportError as exc:
                    raise self._ambiguous(request, exc) from None
                finally:
                    await response.aclose()
            except AgoraChatError as error:
                await self._retry_or_raise(request, error, permit, tries)
            finally:
                if given is not None:  # failed before the given permit's attempt was sent
                    given.refund()
                    given = None

    async def _retry_or_raise(
        self, request: Request, error: AgoraChatError, permit: Permit | None, tries: _Tries
    ) -> None:
        """Raise *error* if it is final; else account for it and wait to retry."""
        if isinstance(error, RateLimitedError) and not isinstance(error, QuotaExhaustedError):
            if tries.refused_since is None:
                tries.refused_since = self._clock.now()
            await self._after_refusal(request, error, permit, tries.refusals, tries.refused_since)
            tries.refusals += 1
        else:
            await self._before_retry(request, error, tries.retries)
            tries.retries += 1

    async def _after_refusal(
        self,
        request: Request,
        error: RateLimitedError,
        permit: Permit | None,
        refusals: int,
        since: float,
    ) -> None:
        """A rate-limit refusal: adapt, then wait to retry, or raise once the budget is spent."""
        if permit is not None:
            permit.refund()  # refused, so not counted by the server either
        self._rate_limited(request, error, permit)
        budget = self._retry.rate_limit_budget
        remaining = budget - (self._clock.now() - since)
        if remaining <= 0:
            raise RateLimitedError(
                retry_after=error.retry_after,
                budget=budget,
                status_code=error.status_code,
                error=error.error,
                description=error.description,
                body_excerpt=error.body_excerpt,
                method=error.method,
                path=error.path,
            ) from error
        delay = min(self._retry.delay(refusals, error.retry_after, self._rng), remaining)
        left = f"{remaining:.0f} s of the {budget:g} s rate-limit budget left"
        await self._wait_to_retry(request, error, refusals + 1, delay, left)

    async def _before_retry(self, request: Request, error: AgoraChatError, retries: int) -> None:
        """A failure other than a rate-limit refusal: raise it if final, else wait to retry."""
        quota = isinstance(error, QuotaExhaustedError)
        limit = self._retry.quota_attempts if quota else self._retry.attempts
        if retries >= limit or not (quota or self._retryable(request, error)):
            raise error
        # The plan's quota: retrying soon cannot help.
        delay = self._retry.max_backoff if quota else self._retry.delay(retries, None, self._rng)
        await self._wait_to_retry(request, error, retries + 1, delay, f"of {limit} attempts")

    async def _wait_to_retry(
        self, request: Request, error: AgoraChatError, attempt: int, delay: float, detail: str
    ) -> None:
        """Tell of retry number *attempt* of *request*, and wait *delay* seconds for it."""
        self._emit(
            Retrying(
                method=request.method,
                path=request.where,
                attempt=attempt,
                delay=delay,
                reason=type(error).__name__,
            )
        )
        logger.info(
            "%s %s: %s; retry %d (%s) in %.2f s",
            request.method,
            request.where,
            type(error).__name__,
            attempt,
            detail,
            delay,
        )
        await self._clock.sleep(delay)

    def _retryable(self, request: Request, error: AgoraChatError) -> bool:
        if is_retryable(error):
            return True
        if request.idempotent:
            # A read changes nothing: every transient failure may be retried.
            return isinstance(error, TransportError) or (
                isinstance(error, ServerError) and error.status_code in _AMBIGUOUS_STATUSES
            )
        return request.retry_unknown and isinstance(error, OutcomeUnknownError)

    async def acquire(
        self,
        claims: tuple[Claim, ...],
        *,
        where: str,
        min_units: int | None = None,
        priority: Priority = "interactive",
    ) -> Permit:
        """A permit from the limiter for a request to *where*; waits are reported as events.

        Raises:
            ValidationError: a claim could never fit its limit.
            LimiterUnavailableError: a shared limiter's store is unreachable.
        """
        if self._on_event is None and not logger.isEnabledFor(logging.DEBUG):
            # Nobody to tell of waits.
            return await self._limiter.acquire(claims, min_units=min_units, priority=priority)
        started = self._clock.now()
        permit = await self._limiter.acquire(claims, min_units=min_units, priority=priority)
        waited = self._clock.now() - started
        if waited > 0:
            self._emit(LimiterWait(path=where, claims=claims, waited=waited))
            logger.debug("%s waited %.3f s for %s", where, waited, claims)
        return permit

    def _rate_limited(
        self, request: Request, error: RateLimitedError, permit: Permit | None
    ) -> None:
        exceeded = _exceeded(request.claims, None if permit is None else permit.binding)
        self._limiter.penalize(exceeded)
        names = tuple(name for name, _ in exceeded)
        self._emit(
            RateLimited(
                method=request.method,
                path=request.where,
                status_code=error.status_code,
                error=error.error,
                retry_after=error.retry_after,
                limits=names,
            )
        )
        logger.info(
            "%s %s refused for a rate limit (HTTP %d %s); adapting %s",
            request.method,
            request.where,
            error.status_code,
            error.error,
            names,
        )

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def _send(
        self, request: Request, token: str | None, permit: Permit | None, *, attempt: int = 0
    ) -> httpx.Response:
        """One attempt: the response with its body unread (the caller closes it)."""
        if self._closed:
            self._refuse_closed(request, permit)
        http_request = self._build(request, token)
        started = time.perf_counter()
        try:
            try:
                response = await self._http.send(http_request, stream=True)
            finally:
                if permit is not None:
                    # Counted by now, if at all; a no-op after a refund below.
                    permit.settle()
        except RuntimeError:
            if not self._http.is_closed:  # httpx: "the client has been closed"
                raise
            self._refuse_closed(request, permit)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            if permit is not None:
                permit.refund()  # the request never reached the server
            raise ConnectError(
                f"could not connect for {request.method} {request.where}: {type(exc).__name__}; "
                "nothing was sent, the request can be retried"
            ) from None
        except httpx.TransportError as exc:
            raise self._ambiguous(request, exc) from None
        if permit is not None:
            try:
                await self._limiter.flush()  # other processes see a late answer at once
            except BaseException:  # cancelled: the response is the caller's only on return
                await response.aclose()
                raise
        if self._on_event is not None or logger.isEnabledFor(logging.DEBUG):
            self._sent(request, response, time.perf_counter() - started, attempt)
        return response

    def _build(self, request: Request, token: str | None) -> httpx.Request:
        content = request.content
        if request.json is not None:
            content = dumps(request.json)
        headers = self._headers(token, content is not None)
        if request.headers:
            headers = httpx.Headers(headers)
            headers.update(request.headers)
        return self._http.build_request(
            request.method,
            self._url(request),
            headers=headers,
            content=content,
            files=request.files,
            data=request.data,
        )

    def _refuse_closed(self, request: Request, permit: Permit | None) -> NoReturn:
        if permit is not None:
            permit.refund()  # nothing was sent
        raise ClientClosedError(
            f"{request.method} {request.where} was not sent: the client is closed; "
            "create a new AgoraChatClient to send more"
        )

    def _url(self, request: Request) -> httpx.URL | str:
        """The request's address; API addresses are parsed once (parsing is costly)."""
        if request.url is not None:
            return request.url
        url = self._urls.get(request.path)
        if url is None:
            if len(self._urls) >= _MAX_CACHED_URLS:  # paths naming users or messages
                self._urls.clear()
            url = self._urls[request.path] = httpx.URL(self._base + request.path)
        return url

    def _headers(self, token: str | None, json: bool) -> httpx.Headers:
        """The headers of an API request, built once per token (httpx copies them)."""
        if token != self._token:
            self._token = token
            self._plain_headers, self._json_headers = _api_headers(token)
        return self._json_headers if json else self._plain_headers

    def _sent(
        self, request: Request, response: httpx.Response, elapsed: float, attempt: int
    ) -> None:
        logger.debug(
            "%s %s -> %d in %.0f ms",
            request.method,
            request.where,
            response.status_code,
            elapsed * 1000,
        )
        self._emit(
            RequestSent(
                method=request.method,
                path=request.where,
                status_code=response.status_code,
                elapsed=elapsed,
                attempt=attempt,
            )
        )

    def _ambiguous(self, request: Request, exc: httpx.TransportError) -> AgoraChatError:
        what = f"{request.method} {request.where} failed after it was sent: {type(exc).__name__}"
        error = TransportError(what)
        if request.idempotent:
            return error
        return OutcomeUnknownError(
            what + "; it may or may not have been processed, do not resend blindly",
            cause=error,
        )

    async def _decode(self, request: Request, response: httpx.Response) -> dict[str, Any]:
        raw, cut = await _read_capped(response, MAX_JSON_BYTES)
        problem: str | None = None
        data: Any = None
        if cut:
            problem = f"the response is larger than {MAX_JSON_BYTES} bytes"
        else:
            try:
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                problem = "the response is not JSON"
            else:
                if not isinstance(data, dict):
                    problem = "the response is not a JSON object"
        if problem is None:
            return data  # type: ignore[no-any-return]
        error = UnexpectedResponseError(
            problem,
            status_code=response.status_code,
            body_excerpt=excerpt(raw[:4096].decode("utf-8", "replace")),
        )
        if request.idempotent:
            raise error
        raise OutcomeUnknownError(
            f"{request.method} {request.path} was accepted (HTTP {response.status_code}) but "
            f"{problem}; its outcome is unknown",
            cause=error,
        ) from error

    async def _error(self, request: Request, response: httpx.Response) -> AgoraChatError:
        raw, _ = await _read_capped(response, MAX_ERROR_BYTES)
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
            kwargs["retry_after"] = _parse_retry_after(
                response.headers.get("Retry-After"), datetime.now(tz=UTC).timestamp()
            )
        api_error = cls(**kwargs)
        if not request.idempotent and status in _AMBIGUOUS_STATUSES:
            return OutcomeUnknownError(
                f"{api_error}; the request may or may not have been processed",
                cause=api_error,
            )
        return api_error
