"""The emulator: a strict, in-memory Agora Chat message API as an ASGI application.

It implements every endpoint the client supports, following the reference pages:
authentication (static tokens, client credentials, AccessToken2 app tokens),
request validation with the documented error bodies, the 5 KB request and 3 KB
body+ext limits, the per-app quotas counted in their documented units (with a
choice of counting policy and a time scale), files, history files built from
what it actually received, recall, conversation deletion and imports. Tests
inspect what it delivered and refused, and can make it fail on purpose.

Serve it in-process (``Emulator.client()`` wires an :class:`AgoraChatClient`
through ``httpx.ASGITransport``, no socket) or on a local port
(``python -m agora_chat_async.testing --port 8080``).

Where the reference is silent the emulator makes a documented choice, listed in
``docs/testing.md``.
"""

from __future__ import annotations

import contextvars
import hashlib
import itertools
import random
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote

import anyio
import httpx

from ..._accesstoken import PRIVILEGE_CHAT_APP, SERVICE_CHAT
from ..._auth import Auth, StaticToken
from ..._call_quotas import LocalCallQuotas
from ..._client import AgoraChatClient
from ..._clock import Clock
from ..._events import EventHook
from ..._limits import Limiter
from ..._rates import DEFAULT_RATE_LIMITS, LIMIT_NAMES, Rate, RateLimits
from ..._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from .._asgi import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    BodyTooLargeError,
    HTTPRequest,
    HTTPResponse,
    json_response,
    read_request,
    send_response,
)
from .._clock import ScaledClock
from .._faults import NO_FAULTS, Faults
from .._network import LOOPBACK, Network
from .._quota import Counter, PeakTracker, Policy, make_counter
from .._tokens import parse_token
from ._routes import APP_ROUTES, EMULATOR_ROUTES, Route
from ._rules import Problem, unauthorized
from ._state import (
    CALL_RATE_REFUSAL,
    ENDPOINTS,
    FEATURES,
    QUOTA_REFUSAL,
    BroadcastRecord,
    Delivery,
    Edit,
    Imported,
    Refusal,
    RoamingDeletion,
    StoredFile,
)

__all__ = ["Emulator"]

_FIRST_MESSAGE_ID: Final = 1029457500870543736
#: When the request being handled reached the emulator (its clock): answers say how long
#: it took (``duration``).
_RECEIVED: Final = contextvars.ContextVar[float]("received")
#: The inspection API and the inbox page: not counted as requests, never faulted.
_INSPECTION: Final = frozenset(
    ("stats", "reset", "deliveries", "admissions", "inbox", "inbox_page")
)
#: Connections remembered for the network's handshake, before the memory is cleared.
_MAX_CONNECTIONS: Final = 100_000


class Emulator:
    """A strict in-memory Agora Chat message API for one app; an ASGI application.

    Args:
        org_name: the only org it serves (others get 404).
        app_name: the only app it serves (others get 404).
        tokens: static bearer tokens it accepts.
        clients: client ID -> secret pairs for ``POST /token``.
        token_ttl: lifetime, in emulated seconds, of tokens from ``POST /token``
            when the request names no ``ttl``.
        app_id: accept AccessToken2 chat app tokens for this App ID...
        app_certificate: ...signed with this certificate.
        rate_limits: the quotas to enforce, per app, in their documented units,
            including ``send_calls``, the call rate shared by the send endpoints;
            ``None`` for no limits. Defaults to the documented ones.
        policy: how quotas are counted: ``"sliding"`` (default), ``"fixed"`` or
            ``"token_bucket"``.
        time_scale: emulated seconds per real second (60 runs a "minute" a second).
        clock: a clock to use instead (for example a ``MockClock`` shared with the client).
        refusals: override the refusal for a limit name (``users``, ``groups``,
            ``rooms``, ``other``, ``send_calls``).
        retry_after: if set, refusals for limits carry ``Retry-After`` with this many seconds.
        plan_quota: total message recipients the plan allows; past it, 429 ``resource_limited``.
        faults: :class:`Faults` per endpoint name, or ``"*"`` for all.
        network: the :class:`Network` between the client and the emulator (none by
            default): a delay before each request is counted and one before its answer
            leaves.
        seed: seeds the fault draws and generated ids for reproducible runs.
        history_filler: generated records added to every history hour file, for size tests.
        record_deliveries: keep every :class:`Delivery` (the default); ``False`` only counts
            them (``delivered_count``), for runs of millions of recipients. Recall, history
            and ``duplicates`` need the records.
        recall_window: emulated seconds within which a message can be recalled (120).
        features: the features the app has (``"broadcasts"``, ``"rewrite"``,
            ``"roaming"``; all by default): one it lacks is refused as the pages document.
        online_users: the users online (for broadcasts to online users and the offline
            messages); a set the test may change (``emulator.online_users``).

    The broadcasts' quotas are ``rate_limits.broadcasts``, counted on the emulator's
    clock, its days in UTC (``BroadcastLimits.day_zone``).
    """

    def __init__(
        self,
        *,
        org_name: str = "test-org",
        app_name: str = "test-app",
        tokens: Iterable[str] = ("test-token",),
        clients: Mapping[str, str] | None = None,
        token_ttl: int = 7 * 24 * 3600,
        app_id: str | None = None,
        app_certificate: str | None = None,
        rate_limits: RateLimits | None = DEFAULT_RATE_LIMITS,
        policy: Policy = "sliding",
        time_scale: float = 1.0,
        clock: Clock | None = None,
        refusals: Mapping[str, Refusal] | None = None,
        retry_after: float | None = None,
        plan_quota: int | None = None,
        faults: Mapping[str, Faults] | None = None,
        network: Network = LOOPBACK,
        seed: int = 0,
        history_filler: int = 0,
        recall_window: float = 120.0,
        max_request_bytes: int = 5000,
        max_content_bytes: int = 3000,
        max_file_bytes: int = 10_000_000,
        record_deliveries: bool = True,
        features: Iterable[str] = FEATURES,
        online_users: Iterable[str] = (),
    ) -> None:
        self.org_name, self.app_name = org_name, app_name
        self.clock: Clock = clock or ScaledClock(time_scale)
        self.tokens = set(tokens)
        self.clients = dict(clients or {})
        self.token_ttl = token_ttl
        self.app_id, self.app_certificate = app_id, app_certificate
        self.rate_limits = rate_limits
        self.policy: Policy = policy
        self.refusals: dict[str, Refusal] = {
            "users": QUOTA_REFUSAL,
            "groups": QUOTA_REFUSAL,
            "rooms": QUOTA_REFUSAL,
            "other": CALL_RATE_REFUSAL,
            "send_calls": CALL_RATE_REFUSAL,
            **(refusals or {}),
        }
        self.retry_after = retry_after
        self.plan_quota = plan_quota
        unknown = set(faults or {}) - {*ENDPOINTS, "*"}
        if unknown:
            raise ValueError(f"unknown endpoint names in faults: {sorted(unknown)}")
        self.faults = dict(faults or {})
        self.network = network
        self.seed = seed
        self.history_filler = history_filler
        self.recall_window = recall_window
        self.max_request_bytes = max_request_bytes
        self.max_content_bytes = max_content_bytes
        self.max_file_bytes = max_file_bytes
        self.record_deliveries = record_deliveries
        unknown_features = set(features) - set(FEATURES)
        if unknown_features:
            raise ValueError(f"unknown features: {sorted(unknown_features)}")
        self.features = frozenset(features)
        self.online_users: set[str] = set(online_users)
        self._signing_key = hashlib.sha256(f"emulator-{seed}".encode()).digest()
        self._wall_origin = time.time() - self.clock.now()
        self.reset()

    # -- state and inspection ---------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every delivery, file, token, count and window; keep the configuration."""
        self._rng = random.Random(self.seed)  # noqa: S311 - reproducible faults, not security
        self._ids = itertools.count(_FIRST_MESSAGE_ID)
        self.deliveries: list[Delivery] = []
        """Every message delivered, one entry per recipient, in order."""
        self.admissions: list[tuple[str, float, int]] = []
        """(limit, Unix time in ms on the emulator's clock, units) of every request a quota
        counted, in order (kept with ``record_deliveries``)."""
        self.limit_refusals: list[tuple[str, float, int]] = []
        """(limit, Unix time in ms on the emulator's clock, units) of every request a quota
        refused, in order (kept with ``record_deliveries``)."""
        self.delivered_count = 0
        """How many deliveries were made (also when they are not recorded)."""
        self.imports: list[Imported] = []
        """Every imported message, in order."""
        self.deleted_conversations: list[tuple[str, str, str, bool]] = []
        """(username, channel, type, delete_roam) of each conversation deletion."""
        self.recalled: set[str] = set()
        """Message ids recalled so far."""
        self.requests: Tally[str] = Tally()
        """Requests received, per endpoint name."""
        self.refused: Tally[str] = Tally()
        """Requests refused, per reason (``unauthorized``, ``invalid``, ``too_large``,
        ``limit:users``, ``plan``, ``fault:503``, ...)."""
        self.faults_injected: Tally[str] = Tally()
        """Faults applied, per kind (``process_then_500``, ``drop_connection``, ...)."""
        self._connections: set[object] = set()
        self._files: dict[str, StoredFile] = {}
        self._issued: dict[str, float] = {}
        #: Every bearer token a request presented (issued, static or app tokens): what a
        #: test searches logs and errors for.
        self.presented_tokens: set[str] = set()
        self._by_id: dict[str, Delivery] = {}
        # Deliveries by the UTC hour they were received in; history records are built
        # from them only when a history file is asked for.
        self._by_hour: defaultdict[str, list[Delivery]] = defaultdict(list)
        self._counters: dict[str, Counter] = {}
        self._peaks: dict[str, PeakTracker] = {}
        self._plan_used = 0
        self.broadcasts: list[BroadcastRecord] = []
        """Every broadcast made, in order, with whom it reached."""
        self.edits: defaultdict[str, list[Edit]] = defaultdict(list)
        """Message id -> its edits, in order (a message's edit history)."""
        self.roaming_deletions: list[RoamingDeletion] = []
        """Every one-way deletion of roaming messages, in order."""
        self.call_quotas: LocalCallQuotas | None = None
        """The broadcasts' quotas (``None`` without ``rate_limits``)."""
        if self.rate_limits is not None:
            self.call_quotas = LocalCallQuotas(
                self.rate_limits.broadcasts, 0.0, self.clock, unix_time=self.wall_time
            )
        for name, rate in self._rates().items():
            self._counters[name] = make_counter(self.policy, rate)
            self._peaks[name] = PeakTracker(rate.per)

    def _rates(self) -> dict[str, Rate]:
        if self.rate_limits is None:
            return {}
        rates = {name: self.rate_limits.rate(name) for name in LIMIT_NAMES}
        return {name: rate for name, rate in rates.items() if rate is not None}

    @property
    def duplicates(self) -> int:
        """Deliveries of a message a recipient had already received (same sender and content)."""
        counts = Tally(delivery.key() for delivery in self.deliveries)
        return sum(count - 1 for count in counts.values())

    @property
    def peak_units(self) -> dict[str, int]:
        """For each limit, the most units accepted in any window of its length."""
        return {name: tracker.peak for name, tracker in self._peaks.items()}

    def delivered_to(self, recipient: str) -> list[Delivery]:
        """The deliveries to one user, group or room."""
        return [d for d in self.deliveries if d.recipient == recipient]

    def revoke_tokens(self) -> None:
        """Invalidate every token issued by ``POST /token`` (static tokens stay valid)."""
        self._issued.clear()

    def wall_time(self) -> float:
        """The emulator's Unix time in seconds (runs ``time_scale`` times faster than real time)."""
        return self._wall_origin + self.clock.now()

    def stats(self) -> dict[str, Any]:
        """A JSON-friendly summary, also served at ``GET /_emulator/stats``."""
        return {
            "deliveries": self.delivered_count,
            "duplicates": self.duplicates,
            "imports": len(self.imports),
            "requests": dict(self.requests),
            "refused": dict(self.refused),
            "faults_injected": dict(self.faults_injected),
            "peak_units": self.peak_units,
            "limits": {name: [rate.limit, rate.per] for name, rate in self._rates().items()},
        }

    def client(
        self,
        *,
        auth: Auth | None = None,
        clock: Clock | None = None,
        rate_limits: RateLimits | None = None,
        limiter: Limiter | None = None,
        base_url: str = "http://emulator",
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        on_event: EventHook | None = None,
        rng: random.Random | None = None,
    ) -> AgoraChatClient:
        """An :class:`AgoraChatClient` talking to this emulator in-process (no socket).

        It uses the first static token unless *auth* is given, and the
        emulator's clock unless *clock* (or a *limiter* on its own clock) is given, so
        both count quotas in the same (possibly scaled or virtual) time; *rng* seeds the
        retries' jitter. Close it (``async with``) when done; a *limiter* given is the
        caller's to close.

        Raises:
            ValueError: no *auth* and the emulator has no static token.
            ValidationError: both *rate_limits* and *limiter* were given.
        """
        if auth is None:
            if not self.tokens:
                raise ValueError("the emulator has no static token; pass auth=")
            auth = StaticToken(sorted(self.tokens)[0])
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self), timeout=timeout)
        return AgoraChatClient(
            base_url,
            self.org_name,
            self.app_name,
            auth=auth,
            # The given limiter's clock, else the emulator's: both count time alike.
            clock=clock or (limiter.clock if limiter is not None else None) or self.clock,
            rate_limits=rate_limits,
            limiter=limiter,
            http_client=http,
            retry=retry,
            on_event=on_event,
            rng=rng,
        )

    # -- ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            request = await read_request(scope, receive, self.max_file_bytes + 64 * 1024)
        except BodyTooLargeError:
            self.refused["too_large"] += 1
            await send_response(
                send,
                self._error_response(
                    Problem(
                        413,
                        "request_entity_too_large",
                        "the request body is too large",
                        reason="too_large",
                    )
                ),
            )
            return
        host = f"{scope.get('scheme', 'http')}://{dict(request.headers).get('host', 'emulator')}"
        network = self.network
        if network is not LOOPBACK:
            delay = network.forward_delay(self._rng, new_connection=self._is_new(scope))
            await self.clock.sleep(delay)
        token = _RECEIVED.set(self.clock.now())
        try:
            endpoint, response, drop = await self.handle(request, host)
        finally:
            _RECEIVED.reset(token)
        delay = self._faults_for(endpoint).delay(self._rng) if endpoint else 0.0
        if network is not LOOPBACK:
            await self.clock.sleep(network.back_delay(self._rng))
        if delay > 0:
            await anyio.sleep(delay)
        await send_response(send, response, drop=drop)

    def _is_new(self, scope: ASGIScope) -> bool:
        """Whether this is the first request of its connection (by the client's address)."""
        client = scope.get("client")
        if client is None:
            return False
        key = tuple(client)
        if key in self._connections:
            return False
        if len(self._connections) >= _MAX_CONNECTIONS:
            self._connections.clear()
        self._connections.add(key)
        return True

    def _duration_ms(self) -> int:
        """Milliseconds since the request being answered reached the emulator."""
        received = _RECEIVED.get(None)
        if received is None:
            return 0
        return max(0, int((self.clock.now() - received) * 1000))

    async def handle(self, request: HTTPRequest, host: str) -> tuple[str, HTTPResponse, bool]:
        """Route and answer one request; returns (endpoint, response, drop the connection)."""
        try:
            route, params = self._route(request)
        except Problem as problem:
            self.refused[problem.reason] += 1
            return "", self._error_response(problem), False
        endpoint = route.endpoint
        if endpoint not in _INSPECTION:
            self.requests[endpoint] += 1
        faults = self._faults_for(endpoint)
        if faults.refuse_503 and self._rng.random() < faults.refuse_503:
            self.refused["fault:503"] += 1
            self.faults_injected["refuse_503"] += 1
            return (
                endpoint,
                self._error_response(
                    Problem(
                        503,
                        "service_unavailable",
                        "the service is temporarily unavailable (fault)",
                        reason="fault:503",
                        exception="ServiceUnavailable",
                    )
                ),
                False,
            )
        try:
            response = await route.handler(self, request, params, host)
        except Problem as problem:
            self.refused[problem.reason] += 1
            return endpoint, self._error_response(problem), False
        if faults.process_then_500 and self._rng.random() < faults.process_then_500:
            self.faults_injected["process_then_500"] += 1
            return (
                endpoint,
                self._error_response(
                    Problem(
                        500,
                        "internal_error",
                        "internal server error (fault, after processing)",
                        reason="fault:500",
                        exception="InternalError",
                    )
                ),
                False,
            )
        drop = bool(faults.drop_connection and self._rng.random() < faults.drop_connection)
        if drop:
            self.faults_injected["drop_connection"] += 1
        return endpoint, response, drop

    def _faults_for(self, endpoint: str) -> Faults:
        if endpoint in _INSPECTION:
            return NO_FAULTS  # what a test reads back is never the fault it injected
        return self.faults.get(endpoint) or self.faults.get("*") or NO_FAULTS

    def _error_response(self, problem: Problem) -> HTTPResponse:
        payload = {
            "error": problem.error,
            "exception": problem.exception,
            "timestamp": int(self.wall_time() * 1000),
            "duration": self._duration_ms(),
            "error_description": problem.description,
        }
        return json_response(problem.status, payload, problem.headers)

    def envelope(self, path: str, data: object, *, action: str = "post", **extra: Any) -> object:
        """The documented response envelope around *data*."""
        return {
            "path": path,
            "uri": f"http://emulator/{self.org_name}/{self.app_name}{path}",
            "timestamp": int(self.wall_time() * 1000),
            "organization": self.org_name,
            "application": "00000000-emulator-0000-000000000000",
            "action": action,
            "data": data,
            "duration": self._duration_ms(),
            "applicationName": self.app_name,
            **extra,
        }

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, request: HTTPRequest) -> tuple[Route, dict[str, str]]:
        """The route of *request* and its path parameters (decoded), or a 404/405."""
        if request.path in ("", "/"):
            return EMULATOR_ROUTES.match(request.method, ["inbox", "page"])
        parts = [unquote(part) for part in request.path.split("/")[1:]]
        if parts[:1] == ["_emulator"]:
            return EMULATOR_ROUTES.match(request.method, parts[1:])
        if len(parts) < 3 or parts[0] != self.org_name or parts[1] != self.app_name:
            raise Problem(
                404,
                "organization_application_not_found",
                "Could not find application for the org/app in the URL",
                reason="not_found",
            )
        return APP_ROUTES.match(request.method, parts[2:])

    # -- auth and limits --------------------------------------------------------------------------

    def authenticate(self, request: HTTPRequest) -> None:
        """Accept the request's bearer token (static, issued or an app token), or a 401."""
        header = request.headers.get("authorization", "")
        if not header:
            raise unauthorized("Unable to authenticate due to missing access token")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("Unable to authenticate due to corrupt access token")
        self.presented_tokens.add(token)
        if token in self.tokens:
            return
        expires = self._issued.get(token)
        if expires is not None:
            if self.clock.now() < expires:
                return
            raise unauthorized("Unable to authenticate due to expired access token")
        if token.startswith("007") and self.app_certificate:
            try:
                parsed = parse_token(token, self.app_certificate)
            except ValueError:
                raise unauthorized("Unable to authenticate due to corrupt access token") from None
            if parsed.app_id != self.app_id:
                raise unauthorized("Unable to authenticate due to corrupt access token")
            if PRIVILEGE_CHAT_APP not in parsed.services.get(SERVICE_CHAT, {}):
                raise unauthorized("the token carries no chat app privilege")
            if parsed.issue_ts + parsed.expire <= self.wall_time():
                raise unauthorized("Unable to authenticate due to expired access token")
            return
        raise unauthorized("Unable to authenticate due to corrupt access token")

    def admit(self, name: str, units: int) -> None:
        """Count *units* against the limit *name*, or refuse as that limit refuses."""
        counter = self._counters.get(name)
        if counter is None:
            return
        if not counter.try_acquire(self.clock.now(), units):
            if self.record_deliveries:
                self.limit_refusals.append((name, self.wall_time() * 1000, units))
            refusal = self.refusals[name]
            headers = {}
            if self.retry_after is not None:
                headers["Retry-After"] = f"{self.retry_after:g}"
            raise Problem(
                refusal.status,
                refusal.error,
                refusal.description,
                reason=f"limit:{name}",
                exception="ResourceLimitedException",
                headers=headers,
            )
        self._peaks[name].record(self.clock.now(), units)
        if self.record_deliveries:
            self.admissions.append((name, self.wall_time() * 1000, units))
