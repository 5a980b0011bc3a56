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

import hashlib
import hmac
import itertools
import json
import random
import re
import secrets
import time
import uuid
import zlib
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, final
from urllib.parse import unquote

import anyio
import attrs
import httpx

from .._accesstoken import PRIVILEGE_CHAT_APP, SERVICE_CHAT
from .._auth import Auth, StaticToken
from .._client import AgoraChatClient
from .._clock import Clock
from .._events import EventHook
from .._limits import DEFAULT_RATE_LIMITS, Limiter, LimitName, Rate, RateLimits
from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from ._asgi import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    BodyTooLargeError,
    HTTPRequest,
    HTTPResponse,
    json_response,
    parse_multipart,
    read_request,
    send_response,
)
from ._clock import ScaledClock
from ._faults import NO_FAULTS, Faults
from ._quota import Counter, PeakTracker, Policy, make_counter
from ._tokens import parse_token

__all__ = ["Delivery", "Emulator", "Imported", "Refusal"]

#: The endpoint names used for faults, request counts and refusals.
ENDPOINTS: Final = (
    "token",
    "users",
    "groups",
    "rooms",
    "upload",
    "download",
    "history",
    "history_file",
    "recall",
    "delete_conversation",
    "import_users",
    "import_groups",
)
_SEND_KINDS: Final = {"users": "chat", "groups": "groupchat", "rooms": "chatroom"}
_SEND_PATHS: Final = {"users": "users", "chatgroups": "groups", "chatrooms": "rooms"}
_CAPS: Final = {"users": 600, "groups": 3, "rooms": 10}
_MESSAGE_TYPES: Final = ("txt", "img", "audio", "video", "file", "loc", "cmd", "custom")
_CUSTOM_EVENT: Final = re.compile(r"[a-zA-Z0-9\-_/.]{1,32}")
_FIRST_MESSAGE_ID: Final = 1029457500870543736
_ACCESS_DENIED: Final = (
    b'<?xml version="1.0"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired or is not signed</Message></Error>"
)


@final
@attrs.frozen
class Refusal:
    """How the emulator refuses a request over a limit: status and documented error body."""

    status: int
    error: str
    description: str


#: Message quotas (users/groups/rooms): 403 "message send reach limit".
QUOTA_REFUSAL: Final = Refusal(403, "forbidden_op", "message send reach limit")
#: Call rates: 429 ``reach_limit``.
CALL_RATE_REFUSAL: Final = Refusal(429, "reach_limit", "This request has reached api limit")
#: The plan's quota: 429 ``resource_limited``.
PLAN_REFUSAL: Final = Refusal(429, "resource_limited", "You have exceeded the limit of your plan")


@final
@attrs.frozen(kw_only=True)
class Delivery:
    """One message delivered to one recipient (a user, group or room)."""

    message_id: str
    chat_type: str
    recipient: str
    sender: str
    type: str
    body: Mapping[str, Any]
    ext: Mapping[str, Any] | None
    timestamp: int
    """Unix milliseconds on the emulator's (possibly scaled) wall clock."""
    level: str | None = None
    online_only: bool = False
    sync_device: bool = False

    def key(self) -> str:
        """What makes two deliveries the same message to the same recipient."""
        return json.dumps(
            [self.chat_type, self.recipient, self.sender, self.type, self.body, self.ext],
            sort_keys=True,
        )


@final
@attrs.frozen(kw_only=True)
class Imported:
    """One imported message."""

    message_id: str
    chat_type: str
    sender: str
    target: str
    type: str
    body: Mapping[str, Any]
    is_ack_read: bool | None
    msg_timestamp: int | None
    need_download: bool | None


@attrs.define
class _StoredFile:
    data: bytes
    thumbnail: bytes
    share_secret: str
    restricted: bool


class _Problem(Exception):  # noqa: N818 - internal control flow, not an error of the library
    """Stop handling and answer with this error."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        reason: str,
        exception: str = "java.lang.IllegalArgumentException",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description
        self.reason, self.exception, self.headers = reason, exception, dict(headers or {})


def _invalid(description: str) -> _Problem:
    return _Problem(400, "illegal_argument", description, reason="invalid")


def _unauthorized(description: str) -> _Problem:
    return _Problem(
        401,
        "auth_bad_access_token",
        description,
        reason="unauthorized",
        exception="org.apache.usergrid.rest.exceptions.SecurityException",
    )


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
        seed: seeds the fault draws and generated ids for reproducible runs.
        history_filler: generated records added to every history hour file, for size tests.
        record_deliveries: keep every :class:`Delivery` (the default); ``False`` only counts
            them (``delivered_count``), for runs of millions of recipients. Recall, history
            and ``duplicates`` need the records.
        recall_window: emulated seconds within which a message can be recalled (120).
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
        seed: int = 0,
        history_filler: int = 0,
        recall_window: float = 120.0,
        max_request_bytes: int = 5000,
        max_content_bytes: int = 3000,
        max_file_bytes: int = 10_000_000,
        record_deliveries: bool = True,
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
        self.seed = seed
        self.history_filler = history_filler
        self.recall_window = recall_window
        self.max_request_bytes = max_request_bytes
        self.max_content_bytes = max_content_bytes
        self.max_file_bytes = max_file_bytes
        self.record_deliveries = record_deliveries
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
        self._files: dict[str, _StoredFile] = {}
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
        for name, rate in self._rates().items():
            self._counters[name] = make_counter(self.policy, rate)
            self._peaks[name] = PeakTracker(rate.per)

    def _rates(self) -> dict[str, Rate]:
        if self.rate_limits is None:
            return {}
        names: tuple[LimitName, ...] = ("users", "groups", "rooms", "send_calls", "other")
        rates = {name: self.rate_limits.rate(name) for name in names}
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
    ) -> AgoraChatClient:
        """An :class:`AgoraChatClient` talking to this emulator in-process (no socket).

        It uses the first static token unless *auth* is given, and the
        emulator's clock unless *clock* is given, so both count quotas in the
        same (possibly scaled or virtual) time. Close it (``async with``) when done.

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
            clock=clock or self.clock,
            rate_limits=rate_limits,
            limiter=limiter,
            http_client=http,
            retry=retry,
            on_event=on_event,
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
                    _Problem(
                        413,
                        "request_entity_too_large",
                        "the request body is too large",
                        reason="too_large",
                    )
                ),
            )
            return
        host = f"{scope.get('scheme', 'http')}://{dict(request.headers).get('host', 'emulator')}"
        endpoint, response, drop = await self.handle(request, host)
        delay = self._faults_for(endpoint).delay(self._rng) if endpoint else 0.0
        if delay > 0:
            await anyio.sleep(delay)
        await send_response(send, response, drop=drop)

    async def handle(self, request: HTTPRequest, host: str) -> tuple[str, HTTPResponse, bool]:
        """Route and answer one request; returns (endpoint, response, drop the connection)."""
        try:
            endpoint, handler = self._route(request)
        except _Problem as problem:
            self.refused[problem.reason] += 1
            return "", self._error_response(problem), False
        if endpoint not in ("stats", "reset", "deliveries"):
            self.requests[endpoint] += 1
        faults = self._faults_for(endpoint)
        if faults.refuse_503 and self._rng.random() < faults.refuse_503:
            self.refused["fault:503"] += 1
            self.faults_injected["refuse_503"] += 1
            return (
                endpoint,
                self._error_response(
                    _Problem(
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
            response = await handler(request, host)
        except _Problem as problem:
            self.refused[problem.reason] += 1
            return endpoint, self._error_response(problem), False
        if faults.process_then_500 and self._rng.random() < faults.process_then_500:
            self.faults_injected["process_then_500"] += 1
            return (
                endpoint,
                self._error_response(
                    _Problem(
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
        return self.faults.get(endpoint) or self.faults.get("*") or NO_FAULTS

    def _error_response(self, problem: _Problem) -> HTTPResponse:
        payload = {
            "error": problem.error,
            "exception": problem.exception,
            "timestamp": int(self.wall_time() * 1000),
            "duration": 0,
            "error_description": problem.description,
        }
        return json_response(problem.status, payload, problem.headers)

    def _envelope(self, path: str, data: object, *, action: str = "post", **extra: Any) -> object:
        return {
            "path": path,
            "uri": f"http://emulator/{self.org_name}/{self.app_name}{path}",
            "timestamp": int(self.wall_time() * 1000),
            "organization": self.org_name,
            "application": "00000000-emulator-0000-000000000000",
            "action": action,
            "data": data,
            "duration": 0,
            "applicationName": self.app_name,
            **extra,
        }

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, request: HTTPRequest) -> tuple[str, Any]:
        parts = [unquote(part) for part in request.path.split("/")[1:]]
        method = request.method
        if parts[:1] == ["_emulator"]:
            if parts == ["_emulator", "stats"] and method == "GET":
                return "stats", self._stats
            if parts == ["_emulator", "reset"] and method == "POST":
                return "reset", self._reset
            if parts == ["_emulator", "deliveries"] and method == "GET":
                return "deliveries", self._deliveries
            if len(parts) == 5 and parts[1] == "history" and method == "GET":
                return "history_file", self._history_file
            raise _Problem(
                404, "service_resource_not_found", "no such emulator resource", reason="not_found"
            )
        if len(parts) < 3 or parts[0] != self.org_name or parts[1] != self.app_name:
            raise _Problem(
                404,
                "organization_application_not_found",
                "Could not find application for the org/app in the URL",
                reason="not_found",
            )
        rest = parts[2:]
        routes: dict[tuple[str, ...], tuple[str, str, Any]] = {
            ("token",): ("POST", "token", self._token),
            ("messages", "users"): ("POST", "users", self._send),
            ("messages", "chatgroups"): ("POST", "groups", self._send),
            ("messages", "chatrooms"): ("POST", "rooms", self._send),
            ("messages", "users", "import"): ("POST", "import_users", self._import),
            ("messages", "chatgroups", "import"): ("POST", "import_groups", self._import),
            ("messages", "msg_recall"): ("POST", "recall", self._recall),
            ("chatfiles",): ("POST", "upload", self._upload),
        }
        key = tuple(rest)
        if len(rest) == 2 and rest[0] == "chatfiles":
            routes[key] = ("GET", "download", self._download)
        if len(rest) == 2 and rest[0] == "chatmessages":
            routes[key] = ("GET", "history", self._history_link)
        if len(rest) == 3 and rest[0] == "users" and rest[2] == "user_channel":
            routes[key] = ("DELETE", "delete_conversation", self._delete_conversation)
        if key not in routes:
            raise _Problem(
                404,
                "service_resource_not_found",
                f"no resource at /{'/'.join(rest)}",
                reason="not_found",
            )
        expected, endpoint, handler = routes[key]
        if method != expected:
            raise _Problem(
                405, "method_not_allowed", f"{method} is not allowed here", reason="method"
            )
        return endpoint, handler

    def _parts(self, request: HTTPRequest) -> list[str]:
        return [unquote(part) for part in request.path.split("/")[1:]]

    # -- auth and limits --------------------------------------------------------------------------

    def _authenticate(self, request: HTTPRequest) -> None:
        header = request.headers.get("authorization", "")
        if not header:
            raise _unauthorized("Unable to authenticate due to missing access token")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Unable to authenticate due to corrupt access token")
        self.presented_tokens.add(token)
        if token in self.tokens:
            return
        expires = self._issued.get(token)
        if expires is not None:
            if self.clock.now() < expires:
                return
            raise _unauthorized("Unable to authenticate due to expired access token")
        if token.startswith("007") and self.app_certificate:
            try:
                parsed = parse_token(token, self.app_certificate)
            except ValueError:
                raise _unauthorized("Unable to authenticate due to corrupt access token") from None
            if parsed.app_id != self.app_id:
                raise _unauthorized("Unable to authenticate due to corrupt access token")
            if PRIVILEGE_CHAT_APP not in parsed.services.get(SERVICE_CHAT, {}):
                raise _unauthorized("the token carries no chat app privilege")
            if parsed.issue_ts + parsed.expire <= self.wall_time():
                raise _unauthorized("Unable to authenticate due to expired access token")
            return
        raise _unauthorized("Unable to authenticate due to corrupt access token")

    def _admit(self, name: str, units: int) -> None:
        counter = self._counters.get(name)
        if counter is None:
            return
        if not counter.try_acquire(self.clock.now(), units):
            refusal = self.refusals[name]
            headers = {}
            if self.retry_after is not None:
                headers["Retry-After"] = f"{self.retry_after:g}"
            raise _Problem(
                refusal.status,
                refusal.error,
                refusal.description,
                reason=f"limit:{name}",
                exception="ResourceLimitedException",
                headers=headers,
            )
        self._peaks[name].record(self.clock.now(), units)

    def _json(self, request: HTTPRequest) -> dict[str, Any]:
        try:
            data = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _invalid("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _invalid("the request body must be a JSON object")
        return data

    # -- handlers ---------------------------------------------------------------------------------

    async def _stats(self, request: HTTPRequest, host: str) -> HTTPResponse:
        return json_response(200, self.stats())

    async def _deliveries(self, request: HTTPRequest, host: str) -> HTTPResponse:
        # The benchmarks' timeline: when each recipient was delivered, in delivery order.
        timeline = [[d.timestamp, d.chat_type, d.recipient] for d in self.deliveries]
        return json_response(200, {"deliveries": timeline})

    async def _reset(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self.reset()
        return json_response(200, self.stats())

    async def _token(self, request: HTTPRequest, host: str) -> HTTPResponse:
        data = self._json(request)
        if data.get("grant_type") != "client_credentials":
            raise _invalid("grant_type must be client_credentials")
        client_id, secret = data.get("client_id"), data.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            raise _invalid("client_id and client_secret are required strings")
        ttl = data.get("ttl", self.token_ttl)
        if type(ttl) is not int or ttl <= 0:
            raise _invalid("ttl must be a positive integer")
        expected = self.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected, secret):
            raise _Problem(
                401, "invalid_grant", "client_id or client_secret is invalid", reason="unauthorized"
            )
        self._admit("other", 1)
        token = "YWMt" + secrets.token_urlsafe(32)
        self._issued[token] = self.clock.now() + ttl
        return json_response(
            200,
            {
                "access_token": token,
                "expires_in": ttl,
                "application": "00000000-emulator-0000-000000000000",
            },
        )

    async def _send(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self._authenticate(request)
        resource = self._parts(request)[3]
        kind = _SEND_PATHS[resource]
        if len(request.body) > self.max_request_bytes:
            raise _Problem(
                413,
                "request_entity_too_large",
                f"the request body is {len(request.body)} bytes; the limit is 5 KB",
                reason="too_large",
            )
        data = self._json(request)
        to = _check_message(data, kind, self.max_content_bytes)
        self._admit("send_calls", 1)
        if self.plan_quota is not None and self._plan_used + len(to) > self.plan_quota:
            refusal = PLAN_REFUSAL
            raise _Problem(
                refusal.status,
                refusal.error,
                refusal.description,
                reason="plan",
                exception="ResourceLimitedException",
            )
        self._admit(kind, len(to))
        self._plan_used += len(to)
        now_ms = int(self.wall_time() * 1000)
        hour = _hour(now_ms)
        sender = data.get("from", "admin")
        chat_type = _SEND_KINDS[kind]
        ids: dict[str, str] = {}
        for recipient in to:
            message_id = str(next(self._ids))
            delivery = Delivery(
                message_id=message_id,
                chat_type=chat_type,
                recipient=recipient,
                sender=sender,
                type=data["type"],
                body=data["body"],
                ext=data.get("ext"),
                timestamp=data.get("msg_timestamp", now_ms),
                level=data.get("chatroom_msg_level"),
                online_only=data.get("routetype") == "ROUTE_ONLINE",
                sync_device=bool(data.get("sync_device", False)),
            )
            self.delivered_count += 1
            if self.record_deliveries:
                self.deliveries.append(delivery)
                self._by_id[message_id] = delivery
                self._by_hour[hour].append(delivery)
            ids[recipient] = message_id
        path = "/messages/" + resource
        return json_response(200, self._envelope(path, ids))

    async def _import(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self._authenticate(request)
        data = self._json(request)
        for field in ("from", "target"):
            if not isinstance(data.get(field), str) or not data[field]:
                raise _invalid(f"{field} is required and must be a non-empty string")
        _check_body(data, self.max_content_bytes)
        for field in ("is_ack_read", "need_download"):
            if field in data and not isinstance(data[field], bool):
                raise _invalid(f"{field} must be a boolean")
        if "msg_timestamp" in data and type(data["msg_timestamp"]) is not int:
            raise _invalid("msg_timestamp must be an integer of milliseconds")
        self._admit("other", 1)
        resource = self._parts(request)[3]
        group = resource == "chatgroups"
        imported = Imported(
            message_id=str(next(self._ids)),
            chat_type="groupchat" if group else "chat",
            sender=data["from"],
            target=data["target"],
            type=data["type"],
            body=data["body"],
            is_ack_read=data.get("is_ack_read"),
            msg_timestamp=data.get("msg_timestamp"),
            need_download=data.get("need_download"),
        )
        self.imports.append(imported)
        path = f"/messages/{resource}/import"
        return json_response(
            200, self._envelope(path, {"msg_id": imported.message_id}, entities=[])
        )

    async def _recall(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self._authenticate(request)
        data = self._json(request)
        for field in ("msg_id", "to"):
            if not isinstance(data.get(field), str) or not data[field]:
                raise _invalid(f"{field} is required and must be a non-empty string")
        if data.get("chat_type") not in ("chat", "groupchat", "chatroom"):
            raise _invalid("chat_type must be chat, groupchat or chatroom")
        if not isinstance(data.get("force"), bool):
            raise _invalid("force is required and must be a boolean")
        if "from" in data and (not isinstance(data["from"], str) or not data["from"]):
            raise _invalid("from must be a non-empty string")
        self._admit("other", 1)
        message_id = data["msg_id"]
        delivery = self._by_id.get(message_id)
        reason: str | None = None
        if delivery is None or message_id in self.recalled:
            reason = "not_found msg"
        elif delivery.recipient != data["to"] or delivery.chat_type != data["chat_type"]:
            reason = "can't find msg to"
        elif self.wall_time() * 1000 - delivery.timestamp > self.recall_window * 1000:
            reason = "exceed recall time limit"
        if reason is not None:
            return json_response(
                200,
                self._envelope(
                    "/messages/msg_recall", {"msgs": [{"msg_id": message_id, "recalled": reason}]}
                ),
            )
        self.recalled.add(message_id)
        return json_response(
            200,
            self._envelope(
                "/messages/msg_recall",
                {
                    "recalled": "yes",
                    "chattype": data["chat_type"],
                    "from": data.get("from", "admin"),
                    "to": data["to"],
                    "msg_id": message_id,
                },
            ),
        )

    async def _delete_conversation(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self._authenticate(request)
        username = self._parts(request)[3]
        data = self._json(request)
        if not isinstance(data.get("channel"), str) or not data["channel"]:
            raise _invalid("channel is required and must be a non-empty string")
        if data.get("type") not in ("chat", "groupchat"):
            raise _invalid("type must be chat or groupchat")
        if not isinstance(data.get("delete_roam"), bool):
            raise _invalid("delete_roam is required and must be a boolean")
        self._admit("other", 1)
        self.deleted_conversations.append(
            (username, data["channel"], data["type"], data["delete_roam"])
        )
        return json_response(
            200,
            self._envelope("/users/user_channel", {"result": "ok"}, action="delete", entities=[]),
        )

    async def _upload(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self._authenticate(request)
        try:
            fields, files = parse_multipart(request.headers.get("content-type", ""), request.body)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        upload = files.get("file")
        if upload is None:
            raise _invalid("the form has no 'file' part")
        if len(upload.data) > self.max_file_bytes:
            raise _Problem(413, "file_too_large", "files are limited to 10 MB", reason="too_large")
        size = []
        for field in ("thumbnail-width", "thumbnail-height"):
            value = fields.get(field, "170")
            if not value.isdigit() or int(value) <= 0:
                raise _invalid(f"{field} must be a positive number of pixels")
            size.append(int(value))
        restricted = request.headers.get("restrict-access", "false").lower() == "true"
        self._admit("other", 1)
        file_id = str(uuid.UUID(int=self._rng.getrandbits(128)))
        thumbnail = upload.data
        if len(upload.data) > 10 * 1024:
            digest = hashlib.sha256(upload.data).hexdigest().encode()
            thumbnail = b"thumbnail %dx%d of " % (size[0], size[1]) + digest
        stored = _StoredFile(upload.data, thumbnail, secrets.token_urlsafe(24), restricted)
        self._files[file_id] = stored
        entity = {"uuid": file_id, "type": "chatfile", "share-secret": stored.share_secret}
        return json_response(
            200,
            {
                "action": "post",
                "application": "00000000-emulator-0000-000000000000",
                "path": "/chatfiles",
                "uri": f"http://emulator/{self.org_name}/{self.app_name}/chatfiles",
                "entities": [entity],
                "timestamp": int(self.wall_time() * 1000),
                "duration": 0,
                "organization": self.org_name,
                "applicationName": self.app_name,
            },
        )

    async def _download(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self._authenticate(request)
        self._admit("other", 1)
        stored = self._files.get(self._parts(request)[3])
        if stored is None:
            raise _Problem(404, "file_not_found", "no file with this uuid", reason="not_found")
        if stored.restricted:
            given = request.headers.get("share-secret", "")
            if not hmac.compare_digest(given, stored.share_secret):
                raise _unauthorized("the file is restricted: a valid share-secret is required")
        thumbnail = request.headers.get("thumbnail", "false").lower() == "true"
        return HTTPResponse(
            200,
            stored.thumbnail if thumbnail else stored.data,
            {"content-type": "application/octet-stream"},
        )

    async def _history_link(self, request: HTTPRequest, host: str) -> HTTPResponse:
        self._authenticate(request)
        hour = self._parts(request)[3]
        try:
            datetime.strptime(hour, "%Y%m%d%H")
        except ValueError:
            raise _invalid("time must be yyyyMMddHH") from None
        if len(hour) != 10:
            raise _invalid("time must be yyyyMMddHH")
        self._admit("other", 1)
        if not self._by_hour.get(hour) and not self.history_filler:
            raise _Problem(
                404, "storage_object_not_found", f"no history for {hour}", reason="not_found"
            )
        expires = int(self.wall_time()) + 3600
        signature = self._sign(hour, expires)
        url = (
            f"{host}/_emulator/history/{self.org_name}/{self.app_name}/{hour}"
            f"?Expires={expires}&OSSAccessKeyId=emulator&Signature={signature}"
        )
        return json_response(
            200, self._envelope(f"/chatmessages/{hour}", [{"url": url}], action="get")
        )

    def _sign(self, hour: str, expires: int) -> str:
        return hmac.new(self._signing_key, f"{hour}:{expires}".encode(), "sha256").hexdigest()

    async def _history_file(self, request: HTTPRequest, host: str) -> HTTPResponse:
        org, app, hour = self._parts(request)[2:5]
        expires = request.query.get("Expires", "")
        signature = request.query.get("Signature", "")
        denied = HTTPResponse(403, _ACCESS_DENIED, {"content-type": "application/xml"})
        if (org, app) != (self.org_name, self.app_name) or not expires.isdigit():
            return denied
        if not hmac.compare_digest(signature, self._sign(hour, int(expires))):
            return denied
        if int(expires) < self.wall_time():
            return denied
        records = [_history_record(delivery) for delivery in self._by_hour.get(hour, ())]
        return HTTPResponse(
            200, self._gzip_lines(hour, records), {"content-type": "application/octet-stream"}
        )

    async def _gzip_lines(self, hour: str, records: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        base_ms = int(datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC).timestamp() * 1000)
        pending: list[bytes] = []
        for index, record in enumerate(
            itertools.chain(records, _filler(self.history_filler, base_ms))
        ):
            pending.append(_compact(record) + b"\n")
            if len(pending) >= 256:
                yield deflate.compress(b"".join(pending))
                pending.clear()
                if index % 4096 == 0:
                    await anyio.lowlevel.checkpoint()
        yield deflate.compress(b"".join(pending)) + deflate.flush()


def _hour(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%Y%m%d%H")


def _history_record(delivery: Delivery) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "bodies": [{**delivery.body, "type": delivery.type}],
        "from": delivery.sender,
        "to": delivery.recipient,
    }
    if delivery.ext is not None:
        payload["ext"] = delivery.ext
    return {
        "msg_id": delivery.message_id,
        "timestamp": delivery.timestamp,
        "direction": "outgoing",
        "to": delivery.recipient,
        "from": delivery.sender,
        "chat_type": delivery.chat_type,
        "payload": payload,
    }


def _filler(count: int, base_ms: int) -> Iterable[dict[str, Any]]:
    for index in range(count):
        yield {
            "msg_id": f"filler-{index}",
            "timestamp": base_ms + index % 3_600_000,
            "direction": "outgoing",
            "to": f"user{index % 1000}",
            "from": "admin",
            "chat_type": "chat",
            "payload": {
                "bodies": [{"msg": f"generated history message {index}", "type": "txt"}],
                "from": "admin",
                "to": f"user{index % 1000}",
            },
        }


# -- validation of message requests ---------------------------------------------------------------


def _check_message(data: Mapping[str, Any], kind: str, max_content_bytes: int) -> list[str]:
    """Validate a send request as the reference describes it; return its recipients."""
    to = data.get("to")
    if not isinstance(to, list) or not to:
        raise _invalid("to is required and must be a non-empty array")
    if not all(isinstance(item, str) and item for item in to):
        raise _invalid("to must contain non-empty strings")
    if len(set(to)) != len(to):
        raise _invalid("to contains the same id twice")
    if len(to) > _CAPS[kind]:
        raise _invalid(f"to names {len(to)} targets; at most {_CAPS[kind]} per request")
    if "from" in data and (not isinstance(data["from"], str) or not data["from"]):
        raise _invalid("from must be a non-empty string when given")
    if "sync_device" in data and not isinstance(data["sync_device"], bool):
        raise _invalid("sync_device must be a boolean")
    if "routetype" in data and data["routetype"] != "ROUTE_ONLINE":
        raise _invalid("routetype must be ROUTE_ONLINE when given")
    if "msg_timestamp" in data and (
        type(data["msg_timestamp"]) is not int or data["msg_timestamp"] < 0
    ):
        raise _invalid("msg_timestamp must be an integer of milliseconds")
    if "chatroom_msg_level" in data:
        if kind != "rooms":
            raise _invalid("chatroom_msg_level applies to chat room messages only")
        if data["chatroom_msg_level"] not in ("high", "normal", "low"):
            raise _invalid("chatroom_msg_level must be high, normal or low")
    _check_body(data, max_content_bytes)
    return list(to)


_REQUIRED: Final[Mapping[str, Mapping[str, type | tuple[type, ...]]]] = {
    "txt": {"msg": str},
    "img": {"filename": str, "url": str, "size": dict},
    "audio": {"filename": str, "url": str, "length": int},
    "video": {"url": str, "length": int, "file_length": int},
    "file": {"filename": str, "url": str},
    "loc": {"lat": str, "lng": str, "addr": str},
    "cmd": {"action": str},
    "custom": {},
}
_OPTIONAL: Final[Mapping[str, Mapping[str, type | tuple[type, ...]]]] = {
    "img": {"secret": str, "file_length": int},
    "audio": {"secret": str, "file_length": int},
    "video": {"thumb": str, "secret": str, "thumb_secret": str, "filename": str, "size": dict},
    "file": {"secret": str, "file_length": int},
    "custom": {"customEvent": str, "customExts": dict},
}


def _check_body(data: Mapping[str, Any], max_content_bytes: int) -> None:
    kind = data.get("type")
    if kind not in _MESSAGE_TYPES:
        raise _invalid(f"type must be one of {', '.join(_MESSAGE_TYPES)}")
    body = data.get("body")
    if not isinstance(body, dict):
        raise _invalid("body is required and must be a JSON object")
    if "ext" in data and not isinstance(data["ext"], dict):
        raise _invalid("ext must be a JSON object; it cannot be null")
    for field, expected in _REQUIRED[kind].items():
        if field not in body:
            raise _invalid(f"body.{field} is required for {kind} messages")
        _check_type(f"body.{field}", body[field], expected)
    for field, expected in _OPTIONAL.get(kind, {}).items():
        if field in body:
            _check_type(f"body.{field}", body[field], expected)
    if isinstance(body.get("size"), dict):
        for side in ("width", "height"):
            if type(body["size"].get(side)) is not int or body["size"][side] < 0:
                raise _invalid(f"body.size.{side} must be a non-negative integer")
    if kind == "custom":
        _check_custom(body)
    size = len(_compact(body)) + (len(_compact(data["ext"])) if "ext" in data else 0)
    if size > max_content_bytes:
        raise _invalid(f"body plus ext is {size} bytes; the limit is 3 KB")


def _check_custom(body: Mapping[str, Any]) -> None:
    event = body.get("customEvent")
    if event is not None and not _CUSTOM_EVENT.fullmatch(event):
        raise _invalid("body.customEvent must match [a-zA-Z0-9-_/.]{1,32}")
    exts = body.get("customExts")
    if exts is not None:
        if len(exts) > 16:
            raise _invalid("body.customExts allows at most 16 entries")
        if not all(isinstance(v, str) for v in exts.values()):
            raise _invalid("body.customExts must be a Map<String,String>")


def _check_type(field: str, value: object, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, expected):
        names = (
            expected.__name__
            if isinstance(expected, type)
            else "/".join(t.__name__ for t in expected)
        )
        kind = {"str": "a string", "int": "an integer", "dict": "a JSON object"}.get(names, names)
        raise _invalid(f"{field} must be {kind}")
    if isinstance(value, str) and not value and field != "body.msg":
        raise _invalid(f"{field} must not be empty")
