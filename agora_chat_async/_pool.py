"""The client's connection pool: httpx's, with two of httpcore's reuse defects corrected.

A quota's window starts many requests at once, and each new connection costs a
handshake before its request is counted (one round trip for TCP, one or two more for
TLS), which the sliding window then carries into every later window. So a fan-out's
requests must find the connections the previous window opened. httpcore 1.0.9 (the
newest of the 1.0 line, which every httpx >= 0.27 uses) does not let them, measured over
a socket with 100 requests started together, again and again (``docs/design.md``):

- **Multi-assignment.** An idle HTTP/1.1 connection handed to a queued request stays
  "available" until that request's task runs and starts on it, so the next request
  entering the pool is handed the same connection; all but one find it taken, go back to
  the queue and wait for another request to finish. 100 requests reusing 100 idle
  connections took up to 4.6 s instead of 0.4 s (encode/httpcore#1110, fixed in the
  httpx2 fork's pool, not in httpcore).
- **Keep-alive counted over every connection.** An idle connection is closed as surplus
  when the pool holds more than ``max_keepalive_connections`` connections in all, idle or
  not, so a pool busier than that closes each connection as its request ends and opens a
  new one for the next: a handshake a request (1,550 imports at a 300 ms round trip used
  73% of their quota instead of 94%).
- **Every idle connection's socket polled on every pass.** The pass runs twice a
  request and asks each idle connection whether it has expired, which polls its socket
  through anyio's attribute lookup (about 40 us): with 100 connections open, a quarter
  of the client's CPU in a fan-out, enough to hold a window's requests back 20-50 ms
  each (measured: 5.1 s of 19 s for 1,550 imports).

:class:`ConnectionPool` is httpcore's pool with its assignment pass written as intended: a
connection handed to a request that has not started on it yet is *reserved*, neither
handed to another request nor closed as surplus, and only idle connections count against
the keep-alive limit, and idle connections are checked for expiry when one is about to be
handed to a request, all of them at most every ``SWEEP`` seconds. The rest is httpcore's
(connecting, HTTP/1.1, timeouts, closing).

One decision is added: a request that finds no idle connection, while a busy one is about
to be free, **waits for that one** rather than open a connection (:func:`connection_wait`).
A new connection's request is counted a handshake late (one round trip or more), and a
sliding window carries that into every later window; a connection whose request started
within the last round trip is free again sooner than that. The pool learns how long a
request holds a connection it did not open (``hold``: the shortest of the last ``_HOLDS``,
about the round trip); the wait is at most one ``hold``, and after it the request opens a
connection as before. A pool that has not yet
seen a reused connection answer never waits.
:func:`pooled_transport` gives an ``httpx.AsyncHTTPTransport`` with it; the client uses
one unless it is given its own ``http_client``.
"""

from __future__ import annotations

import collections
import functools
import ssl
import time
from collections.abc import Iterable
from typing import Any, Final

import anyio
import httpcore
import httpx

__all__ = ["DEFAULT_LIMITS", "SWEEP", "ConnectionPool", "connection_wait", "pooled_transport"]

#: Every idle connection is checked for expiry (its keep-alive time, or the server having
#: closed it) at most this often; the one about to be reused, always.
SWEEP: Final = 1.0

#: The client's pool: httpx's 100 connections, every one of them kept alive between
#: windows (httpx keeps 20), idle ones closed after 4 s: under the 5 s idle timeout of
#: many servers (uvicorn, which serves the emulator, Node.js, Apache), so that the client
#: never reuses a connection just as the server closes it (a request lost in that race is
#: an unknown outcome; with httpx's 5 s, the likely cause of one import of 1,550 lost in
#: some 20 benchmark runs).
DEFAULT_LIMITS: Final = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=4.0
)


#: ``hold`` is the shortest time one of the last this many requests on a connection it did
#: not open held it: about the round trip (a long download among them does not raise it).
_HOLDS: Final = 32
#: A busy connection counts as about to be free from when its request started until this
#: much of a ``hold`` after it was due (an answer a little late is still coming).
_LATE: Final = 0.25


def connection_wait(
    now: float, busy_since: Iterable[float], hold: float | None, ahead: int
) -> float:
    """How long a request that finds no idle connection waits for a busy one: ``0`` to open
    a connection now.

    *busy_since* are when the busy connections' requests started, *hold* how long a request
    usually holds a connection (``None`` before any was measured), *ahead* how many
    requests already wait for one. The connections about to be free are those whose request
    started within the last ``hold`` (plus ``_LATE`` of it): the next one not promised to a
    request ahead is waited for until it is due (plus ``_LATE``), never more than one
    ``hold``, which is less than a new connection's handshake costs.
    """
    if hold is None or hold <= 0:
        return 0.0
    due = sorted(since + hold for since in busy_since if since + hold * (1 + _LATE) > now)
    if len(due) <= ahead:
        return 0.0
    return min(hold, max(0.0, due[ahead] - now) + hold * _LATE)


try:  # httpcore >= 1.0.3: the queue's requests know their connection
    from httpcore._async.connection_pool import AsyncPoolRequest as _AsyncPoolRequest
except ImportError:  # pragma: no cover - an httpcore this pool does not know
    _POOL_REQUESTS = False
else:
    _POOL_REQUESTS = all(
        hasattr(_AsyncPoolRequest, name) for name in ("assign_to_connection", "is_queued")
    )


class ConnectionPool(httpcore.AsyncConnectionPool):
    """``httpcore.AsyncConnectionPool`` that never hands one idle HTTP/1.1 connection to
    two requests, nor closes a connection a request is about to use, and lets a request
    wait for a connection about to be free rather than open one."""

    # Set on first use: the class is swapped onto a pool httpx built (no __init__).
    _agora_busy: dict[httpcore.AsyncConnectionInterface, tuple[float, bool]]
    _agora_holds: collections.deque[float]
    _agora_waiting: int
    _agora_freed: anyio.Event | None

    def _agora_state(self) -> None:
        if not hasattr(self, "_agora_busy"):
            self._agora_busy = {}  # connection -> (its request's start, opened for it)
            self._agora_holds = collections.deque(maxlen=_HOLDS)
            self._agora_waiting = 0
            self._agora_freed = None

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """httpcore's, after waiting (at most one ``hold``) for a busy connection about to
        be free when no idle one is (:func:`connection_wait`)."""
        self._agora_state()
        origin = request.url.origin
        with self._optional_thread_lock:
            wait = self._agora_wait(origin)
        if wait > 0:
            self._agora_waiting += 1
            try:
                with anyio.move_on_after(wait):
                    while not self._agora_idle(origin):
                        if self._agora_freed is None:
                            self._agora_freed = anyio.Event()
                        await self._agora_freed.wait()
            finally:
                self._agora_waiting -= 1
        return await super().handle_async_request(request)

    def _agora_idle(self, origin: httpcore.Origin) -> bool:
        """Whether an idle connection to *origin* is free for a request now."""
        reserved = {request.connection for request in self._requests if request.connection}
        return any(
            c.can_handle_request(origin) and c.is_idle() and c not in reserved
            for c in self._connections
        )

    def _agora_wait(self, origin: httpcore.Origin) -> float:
        if not self._agora_holds or self._agora_idle(origin):
            return 0.0
        queued = sum(1 for request in self._requests if request.connection is None)
        busy = (
            since
            for connection, (since, _) in self._agora_busy.items()
            if connection.can_handle_request(origin)
        )
        return connection_wait(
            time.monotonic(), busy, min(self._agora_holds), self._agora_waiting + queued
        )

    def _agora_released(self, reserved: set[httpcore.AsyncConnectionInterface], now: float) -> None:
        """Note the connections whose request ended since the last pass, and how long
        each reused one was held; wake the requests waiting for one."""
        busy = self._agora_busy
        released = [c for c in busy if c not in reserved]
        for connection in released:
            since, opened = busy.pop(connection)
            if not opened and not connection.is_closed():
                self._agora_holds.append(now - since)
        if released and self._agora_freed is not None:
            self._agora_freed.set()
            self._agora_freed = None

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        # The same three cases as httpcore's pass (reuse, create, replace an idle one),
        # with reservations: a connection assigned to a request still counts as idle
        # until that request starts on it.
        self._agora_state()
        requests: list[Any] = self._requests  # httpcore's AsyncPoolRequest
        connections = self._connections
        reserved = {request.connection for request in requests if request.connection}
        closing: list[httpcore.AsyncConnectionInterface] = []
        now = time.monotonic()
        self._agora_released(reserved, now)
        # Set on the first pass: the class is swapped onto a pool httpx built (no __init__).
        sweep = now >= getattr(self, "_agora_sweep_at", 0.0)
        if sweep:
            self._agora_sweep_at = now + SWEEP
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif sweep and connection.has_expired():
                connections.remove(connection)
                closing.append(connection)
        spare = [c for c in connections if c.is_idle() and c not in reserved]
        for connection in spare[self._max_keepalive_connections :]:
            connections.remove(connection)
            closing.append(connection)
        del spare[self._max_keepalive_connections :]
        for request in requests:
            if request.connection is not None:
                continue
            origin = request.request.url.origin
            found = self._reusable(origin, reserved, spare, closing)
            opened = found is None
            if found is not None:
                connection = found
                if connection in spare:
                    spare.remove(connection)
            else:
                if len(connections) >= self._max_connections:
                    if not spare:
                        continue  # waits for a connection to come back
                    replaced = spare.pop(0)
                    connections.remove(replaced)
                    closing.append(replaced)
                connection = self.create_connection(origin)
                connections.append(connection)
            request.assign_to_connection(connection)
            reserved.add(connection)
            self._agora_busy[connection] = (now, opened)
        return closing

    def _reusable(
        self,
        origin: httpcore.Origin,
        reserved: set[httpcore.AsyncConnectionInterface],
        spare: list[httpcore.AsyncConnectionInterface],
        closing: list[httpcore.AsyncConnectionInterface],
    ) -> httpcore.AsyncConnectionInterface | None:
        """An open connection to *origin* a request can start on now, if any; idle ones
        found expired since the last sweep are moved to *closing* on the way."""
        connections = self._connections
        for connection in list(connections):
            if not (
                connection.can_handle_request(origin)
                and connection.is_available()
                and not (connection in reserved and connection.is_idle())
            ):
                continue
            if connection.is_idle() and connection.has_expired():
                connections.remove(connection)
                closing.append(connection)
                if connection in spare:
                    spare.remove(connection)
                continue
            return connection
        return None


def _supported(pool: object) -> bool:
    """Whether *pool* is httpcore's own pool with the internals the pass relies on (those
    of httpcore >= 1.0.3, whose queue holds ``AsyncPoolRequest`` objects)."""
    return (
        _POOL_REQUESTS
        and type(pool) is httpcore.AsyncConnectionPool
        and all(
            hasattr(pool, name)
            for name in (
                "_requests",
                "_connections",
                "_max_connections",
                "_max_keepalive_connections",
            )
        )
    )


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CA bundle, ``SSL_CERT_FILE`` if set), made once."""
    return httpx.create_ssl_context()


def pooled_transport(
    limits: httpx.Limits = DEFAULT_LIMITS, **options: Any
) -> httpx.AsyncHTTPTransport:
    """An ``httpx.AsyncHTTPTransport`` whose pool is a :class:`ConnectionPool`.

    *options* are ``httpx.AsyncHTTPTransport``'s (``verify=``, ``http2=``, ``proxy=``...).
    With a proxy, or an httpcore whose pool this module does not know, the transport keeps
    httpcore's own pool (correct, with the defects above). Pass it to a client of your own:
    ``httpx.AsyncClient(transport=agora_chat_async.pooled_transport())``.

    Without ``verify=``, every transport of the process shares one SSL context, made at
    the first call (loading the CA bundle takes 20 to 30 ms, a file read on the caller's
    thread: once, not for each client).

    Raises:
        TypeError: an option ``httpx.AsyncHTTPTransport`` does not take.
    """
    options.setdefault("verify", _default_ssl_context())
    transport = httpx.AsyncHTTPTransport(limits=limits, **options)
    pool = transport._pool
    if _supported(pool):
        # Same layout, same state: only the assignment pass differs.
        pool.__class__ = ConnectionPool
    return transport
