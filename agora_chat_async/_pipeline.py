"""The request pipeline: every request the client makes goes through :class:`Pipeline`.

It reads as three layers, as httpx's ``_send_handling_auth`` -> ``_send_single_request``::

    _open                   retries: what was certainly not processed is retried
                            (RetryPolicy.attempts), rate-limit refusals for a time budget
     -> _send_handling_auth the provider's token; after a 401, a new token once
        -> _send_single     one attempt: a limiter permit, the I/O layer (_transport.py),
                            the answer read as a success or as the error it is

- **Permits**: :meth:`Limiter.acquire` with the request's claims (recipients or
  targets and one call for sends, one call elsewhere) before every attempt. One
  attempt owns its permit (:class:`_Attempt`): settled when the answer has been read,
  with the service's ``timestamp`` and ``duration`` from a JSON answer
  (:class:`ServerTiming`), refunded when the request never reached the server or was
  refused for a rate limit (the server did not count it either), and the limit it
  pressed on adapts.
- **Answers**: ``_responses.py`` decodes successes and maps errors; the I/O layer
  says whether anything was sent.

Nothing here logs headers or bodies; URLs are logged without their query.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Protocol, TypeVar, final

import attrs
import httpx

from ._auth import Auth
from ._clock import Clock
from ._converter import converter
from ._events import (
    Event,
    EventHook,
    LimiterWait,
    RateLimited,
    RecipientsSettled,
    RequestSent,
    Retrying,
)
from ._exceptions import (
    AgoraChatError,
    ClientClosedError,
    ConnectError,
    OutcomeUnknownError,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from ._flight import RoundTrips
from ._limits import Limiter
from ._logging import install_redaction, logger
from ._models import SendResult
from ._permit import Permit, ServerTiming
from ._rates import Claim, LimitName, Priority
from ._request import Request
from ._responses import (
    AMBIGUOUS_STATUSES,
    ResponseBody,
    ambiguous,
    decode,
    error_for,
    server_timing,
    unreadable,
)
from ._retry import DEFAULT_RETRY_POLICY, RetryPolicy, is_retryable
from ._transport import HTTPTransport

__all__ = ["Pipeline", "ResponseShape"]


class ResponseShape(Protocol):
    """A response shape of ``_converter``: what its answer lacks when it is unreadable."""

    UNREADABLE: ClassVar[str]


ShapeT = TypeVar("ShapeT", bound=ResponseShape)


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


@final
class _Attempt:
    """One attempt's permit when the attempt fails: refunded if the request never reached
    the server, else settled (it may have been counted). A successful attempt's permit is
    settled by whoever reads the answer. A class, not a generator: it runs on every
    request."""

    __slots__ = ("_permit",)

    def __init__(self, permit: Permit | None) -> None:
        self._permit = permit

    def __enter__(self) -> None:
        if self._permit is not None:
            self._permit.sending()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> None:
        permit = self._permit
        if permit is None or kind is None:
            return
        if issubclass(kind, ConnectError | ClientClosedError):
            permit.refund()  # nothing was sent
        permit.settle()  # a no-op after a refund


@attrs.define
class _Tries:
    """One request's attempts so far, and the permit its caller sized it from."""

    #: For the first attempt (the sender sized the request from it); refunded if unused.
    given: Permit | None = None
    #: The successful attempt's permit, settled once its answer has been read.
    answered: Permit | None = None
    #: Failures other than rate-limit refusals (each retried at most RetryPolicy.attempts).
    retries: int = 0
    #: Rate-limit refusals, retried while RetryPolicy.rate_limit_budget lasts.
    refusals: int = 0
    refused_since: float | None = None

    @property
    def attempts(self) -> int:
        return self.retries + self.refusals


@final
class Pipeline:
    """The pipeline shared by all endpoints of one :class:`AgoraChatClient`."""

    __slots__ = (
        "_auth",
        "_clock",
        "_limiter",
        "_on_event",
        "_retry",
        "_rng",
        "_transport",
        "round_trips",
    )

    def __init__(
        self,
        *,
        transport: HTTPTransport,
        auth: Auth,
        limiter: Limiter,
        clock: Clock,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        on_event: EventHook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._transport = transport
        self._auth = auth
        self._limiter = limiter
        self._clock = clock
        self._retry = retry
        self._on_event = on_event
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not security
        #: The round trips of this client's requests, for what bulk paths keep in flight.
        self.round_trips = RoundTrips()
        install_redaction()

    @property
    def clock(self) -> Clock:
        """The clock the limiter and the auth providers read."""
        return self._clock

    @property
    def base(self) -> str:
        """``{base_url}/{org_name}/{app_name}``."""
        return self._transport.base

    async def aclose(self) -> None:
        """Refuse further requests; close the HTTP client if the client created it.

        Requests not yet sent fail with :class:`ClientClosedError`; requests in flight
        when a created HTTP client closes end as their transport failure maps.
        """
        await self._transport.aclose()

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
        response, answered = await self._open(request, permit)
        timing: ServerTiming | None = None
        try:
            data = await decode(request, response)
            timing = server_timing(
                data,
                new_connection=self._transport.new_connection(response),
                sent=self._transport.sent_at(response),
                streamed=self._transport.streamed(response),
            )
        except httpx.TransportError as exc:
            raise ambiguous(request, exc) from None
        finally:
            if answered is not None:
                answered.settle(timing)  # before anything else can wait
            await response.aclose()
        if answered is not None:
            await self._limiter.flush()  # other processes see a late answer at once
        return data

    async def request_as(
        self, request: Request, shape: type[ShapeT], *, permit: Permit | None = None
    ) -> ShapeT:
        """Send *request* and read its answer as *shape*, a response shape of ``_converter``.

        Raises:
            UnexpectedResponseError: the answer does not have the shape (for a read).
            OutcomeUnknownError: the same for a request that changes state: it was
                accepted, and what it did is unknown.
            AgoraChatError: as :meth:`request` raises.
        """
        data = await self.request(request, permit=permit)
        try:
            return converter.structure(data, shape)
        except Exception as exc:  # cattrs' errors, or a shape's own validation
            raise unreadable(request, shape.UNREADABLE, 200, str(data)) from exc

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[ResponseBody]:
        """Send *request* and yield the successful response's body, as chunks of bytes.

        Error statuses are raised before anything is yielded, after one token
        refresh on a 401 and after the retries of :class:`RetryPolicy` for
        requests that were certainly not processed. A transport failure while
        the body is read is raised as :meth:`request` raises it.
        """
        response, answered = await self._open(request)
        if answered is not None:  # a file: no timestamp, the whole round trip is charged
            answered.settle()
            try:
                await self._limiter.flush()
            except BaseException:
                await response.aclose()
                raise
        try:
            yield ResponseBody(response)
        except httpx.TransportError as exc:
            raise ambiguous(request, exc) from None
        finally:
            await response.aclose()

    # -- layer 1: retries ----------------------------------------------------------------------

    async def _open(
        self, request: Request, given: Permit | None = None
    ) -> tuple[httpx.Response, Permit | None]:
        """The successful response to *request*, body unread, and its attempt's permit,
        which the caller settles once the answer has been read and closes the response."""
        tries = _Tries(given)
        try:
            while True:
                try:
                    response = await self._send_handling_auth(request, tries)
                except RateLimitedError as error:
                    if not request.retry_refused:
                        raise
                    if isinstance(error, QuotaExhaustedError):
                        await self._before_retry(request, error, tries)
                    else:
                        await self._after_refusal(request, error, tries)
                except AgoraChatError as error:
                    await self._before_retry(request, error, tries)
                else:
                    answered, tries.answered = tries.answered, None
                    return response, answered
        finally:
            if tries.given is not None:  # failed before the given permit's attempt was sent
                tries.given.refund()

    async def _after_refusal(
        self, request: Request, error: RateLimitedError, tries: _Tries
    ) -> None:
        """A rate-limit refusal: wait to retry, or raise once the budget is spent."""
        if tries.refused_since is None:
            tries.refused_since = self._clock.now()
        budget = self._retry.rate_limit_budget
        remaining = budget - (self._clock.now() - tries.refused_since)
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
        delay = min(self._retry.delay(tries.refusals, error.retry_after, self._rng), remaining)
        tries.refusals += 1
        left = f"{remaining:.0f} s of the {budget:g} s rate-limit budget left"
        await self._wait_to_retry(request, error, tries.refusals, delay, left)

    async def _before_retry(self, request: Request, error: AgoraChatError, tries: _Tries) -> None:
        """A failure other than a rate-limit refusal: raise it if final, else wait to retry."""
        quota = isinstance(error, QuotaExhaustedError)
        limit = self._retry.quota_attempts if quota else self._retry.attempts
        if tries.retries >= limit or not (quota or self._retryable(request, error)):
            raise error
        # The plan's quota: retrying soon cannot help.
        if quota:
            delay = self._retry.max_backoff
        else:
            delay = self._retry.delay(tries.retries, None, self._rng)
        tries.retries += 1
        await self._wait_to_retry(request, error, tries.retries, delay, f"of {limit} attempts")

    async def _wait_to_retry(
        self, request: Request, error: AgoraChatError, attempt: int, delay: float, detail: str
    ) -> None:
        """Tell of retry number *attempt* of *request*, and wait *delay* seconds for it."""
        self.emit(
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
                isinstance(error, ServerError) and error.status_code in AMBIGUOUS_STATUSES
            )
        return request.retry_unknown and isinstance(error, OutcomeUnknownError)

    # -- layer 2: the token --------------------------------------------------------------------

    async def _send_handling_auth(self, request: Request, tries: _Tries) -> httpx.Response:
        """One attempt with the provider's token, and one more with a new token after a 401
        that the provider says a new token may cure."""
        if request.url is not None or not request.authenticated:
            return await self._send_single(request, None, tries)
        token = await self._auth.get_token(self)
        try:
            return await self._send_single(request, token, tries)
        except AgoraChatError as error:
            if getattr(error, "status_code", None) != 401 or not self._auth.token_rejected(token):
                raise
        logger.info(
            "401 for %s %s; renewing the token and retrying once", request.method, request.where
        )
        return await self._send_single(request, await self._auth.get_token(self), tries)

    # -- layer 3: one attempt ------------------------------------------------------------------

    async def _send_single(
        self, request: Request, token: str | None, tries: _Tries
    ) -> httpx.Response:
        """One attempt: the successful response with its body unread (the caller closes it).

        Raises:
            AgoraChatError: what the answer (or its absence) means; a rate-limit refusal
                has been refunded and has adapted the limit it pressed on.
        """
        built = self._transport.build(request, token)  # before the permit: see build()
        permit: Permit | None = None
        if request.url is None:
            if tries.given is not None:
                permit, tries.given = tries.given, None
            else:
                permit = await self.acquire(
                    request.claims, where=request.where, priority=request.priority
                )
        started = time.perf_counter()
        with _Attempt(permit):
            response = await self._transport.send(request, built)
        elapsed = time.perf_counter() - started
        self.round_trips.record(elapsed)
        if self._on_event is not None or logger.isEnabledFor(logging.DEBUG):
            self._sent(request, response, elapsed, tries.attempts)
        if response.status_code < 400:
            tries.answered = permit  # settled by the reader of the answer
            return response
        raise await self._refusal(request, response, permit)

    async def _refusal(
        self, request: Request, response: httpx.Response, permit: Permit | None
    ) -> AgoraChatError:
        """The error an error status means; its permit settled, or refunded and its limit
        adapted for a rate-limit refusal."""
        if permit is not None:
            permit.settle()
            try:
                await self._limiter.flush()  # other processes see a late answer at once
            except BaseException:  # cancelled: the response is the caller's only on return
                await response.aclose()
                raise
        try:
            error = await error_for(request, response)
        except httpx.TransportError as exc:
            raise ambiguous(request, exc) from None
        finally:
            await response.aclose()
        if isinstance(error, RateLimitedError) and not isinstance(error, QuotaExhaustedError):
            if permit is not None:
                permit.refund()  # refused, so not counted by the server either
            self._rate_limited(request, error, permit)
        return error

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
            self.emit(LimiterWait(path=where, claims=claims, waited=waited, priority=priority))
            logger.debug("%s waited %.3f s for %s", where, waited, claims)
        return permit

    def _rate_limited(
        self, request: Request, error: RateLimitedError, permit: Permit | None
    ) -> None:
        exceeded = _exceeded(request.claims, None if permit is None else permit.binding)
        self._limiter.penalize(exceeded)
        names = tuple(name for name, _ in exceeded)
        self.emit(
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

    def settled(self, family: str, result: SendResult) -> SendResult:
        """Tell the hook what one request of a send settled (:class:`RecipientsSettled`);
        returns *result*."""
        if self._on_event is not None:
            self.emit(
                RecipientsSettled(
                    family=family,
                    delivered=len(result.message_ids),
                    failed=len(result.failed),
                    unknown=len(result.unknown),
                )
            )
        return result

    def emit(self, event: Event) -> None:
        """Call the hook; an exception of the hook's own is logged, never raised: a metrics
        hook cannot leave a response open, a permit unsettled, or a delivered message
        reported failed (trio treats a failing instrument alike)."""
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("the on_event hook raised on %s; the event is dropped", event)

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
        self.emit(
            RequestSent(
                method=request.method,
                path=request.where,
                status_code=response.status_code,
                elapsed=elapsed,
                attempt=attempt,
            )
        )
