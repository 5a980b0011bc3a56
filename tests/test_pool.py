"""The client's connection pool (``_pool.py``): bursts reuse the connections they opened.

A real HTTP/1.1 server on 127.0.0.1 counts the connections it accepts and the requests it
is handling at once; each answer waits for the whole burst to have arrived (bounded), so
a burst that the pool serializes shows as fewer requests handled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpcore
import httpx
import pytest

import agora_chat_async._pool
from agora_chat_async import AgoraChatClient, StaticToken, pooled_transport
from agora_chat_async._pool import ConnectionPool, connection_wait

from .sockets import OK, read_request

BURST = 100
#: How long the server holds a ``POST /slow``: a round trip.
SLOW = 0.3


class Server:
    """Answers every request once *expected* requests are being handled (or after 2 s)."""

    def __init__(self) -> None:
        self.connections = 0
        self.active = 0
        self.peak = 0
        self.expected = BURST
        self._arrived = asyncio.Event()
        #: Set when a connection has been closed, by either side.
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await read_request(reader)
                if head.startswith(b"POST /quick "):
                    writer.write(OK)
                    await writer.drain()
                    continue
                if head.startswith(b"POST /slow "):
                    await asyncio.sleep(SLOW)
                    writer.write(OK)
                    await writer.drain()
                    continue
                if head.startswith(b"POST /close "):  # answers, then closes (keep-alive)
                    writer.write(OK)
                    await writer.drain()
                    break
                self.active += 1
                self._changed.set()
                self.peak = max(self.peak, self.active)
                if self.active >= self.expected:
                    self._arrived.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), 2.0)
                self.active -= 1
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()  # the socket closed: its FIN has left
            self.closed.set()

    async def holding(self, count: int) -> None:
        """Until *count* requests are being held."""
        while self.active < count:
            self._changed = asyncio.Event()
            await self._changed.wait()

    def next_burst(self, expected: int = BURST) -> None:
        self.peak, self.expected, self._arrived = 0, expected, asyncio.Event()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state, f"http://127.0.0.1:{port}/"


async def burst(http: httpx.AsyncClient, url: str, count: int = BURST) -> None:
    async with asyncio.timeout(10):
        await asyncio.gather(*(http.post(url, content=b"{}") for _ in range(count)))


async def test_a_burst_reuses_every_connection_the_last_one_opened(server):
    state, url = server
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with httpx.AsyncClient(transport=pooled_transport(limits)) as http:
        await burst(http, url)
        assert (state.connections, state.peak) == (BURST, BURST)
        for _ in range(3):
            state.next_burst()
            await burst(http, url)
            # every request of the burst went out at once, on the connections kept
            assert (state.connections, state.peak) == (BURST, BURST)


async def test_only_idle_connections_count_against_the_keep_alive_limit(server):
    state, url = server
    state.next_burst(expected=16)  # held until a 16th arrives: never, within the test
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    async with httpx.AsyncClient(transport=pooled_transport(limits)) as http:
        async with asyncio.TaskGroup() as tasks:
            held = [tasks.create_task(http.post(url, content=b"{}")) for _ in range(15)]
            async with asyncio.timeout(10):
                await state.holding(15)
            for _ in range(5):  # one at a time, while 15 are in flight
                await http.post(f"{url}quick", content=b"{}")
            # one connection served them all: it was the only idle one, under the limit
            assert state.connections == 15 + 1
            state.next_burst(expected=0)
            state._arrived.set()
        assert all(task.result().status_code == 200 for task in held)


async def test_requests_over_the_pool_wait_for_a_connection(server):
    state, url = server
    state.next_burst(expected=5)
    limits = httpx.Limits(max_connections=5, max_keepalive_connections=5)
    async with httpx.AsyncClient(transport=pooled_transport(limits)) as http:
        await burst(http, url, count=15)
    assert (state.connections, state.peak) == (5, 5)


async def test_a_pass_polls_no_idle_socket_but_the_one_it_reuses(server, monkeypatch):
    state, url = server
    monkeypatch.setattr(agora_chat_async._pool, "SWEEP", 3600.0)  # only the first pass sweeps
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    polled = []
    has_expired = httpcore._async.http11.AsyncHTTP11Connection.has_expired

    def counting(connection: object) -> bool:
        polled.append(connection)
        return has_expired(connection)  # type: ignore[arg-type]

    async with httpx.AsyncClient(transport=pooled_transport(limits)) as http:
        await burst(http, url)  # 100 idle connections now
        monkeypatch.setattr(httpcore._async.http11.AsyncHTTP11Connection, "has_expired", counting)
        for _ in range(10):
            await http.post(f"{url}quick", content=b"{}")
    # one check a request (the connection reused), not one per idle connection per pass
    assert len(polled) == 10
    assert state.connections == BURST


def test_a_request_waits_for_the_next_busy_connection_due_within_a_hold():
    # two busy connections due at 1.2 and 1.3; a hold of 1.0
    assert connection_wait(1.0, [0.2, 0.3], 1.0, 0) == pytest.approx(0.2 + 0.25)
    assert connection_wait(1.0, [0.2, 0.3], 1.0, 1) == pytest.approx(0.3 + 0.25)
    # both promised to requests ahead: a connection is opened
    assert connection_wait(1.0, [0.2, 0.3], 1.0, 2) == 0.0
    # never more than a hold, even for one just started
    assert connection_wait(1.0, [1.0], 1.0, 0) == 1.0
    # a request overdue by a quarter hold or more is not about to be free (a long one)
    assert connection_wait(1.0, [-0.25], 1.0, 0) == 0.0
    assert connection_wait(1.0, [-0.2], 1.0, 0) == pytest.approx(0.25)
    # nothing measured yet, or nothing busy: open one
    assert connection_wait(1.0, [0.5], None, 0) == 0.0
    assert connection_wait(1.0, [], 1.0, 0) == 0.0


async def test_a_request_takes_a_connection_about_to_be_free_rather_than_open_one(server):
    state, url = server
    async with httpx.AsyncClient(transport=pooled_transport()) as http:
        async with asyncio.timeout(10):
            for _ in range(2):  # two connections, then how long a reused one is held
                await asyncio.gather(*(http.post(f"{url}slow") for _ in range(2)))
            assert state.connections == 2
            held = [asyncio.create_task(http.post(f"{url}slow")) for _ in range(2)]
            await asyncio.sleep(SLOW / 2)  # both busy, free in half a round trip
            third = await http.post(f"{url}slow")
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    assert third.status_code == 200
    # a new connection would have been counted a handshake late (SLOW / 2 sooner here)
    assert state.connections == 2


async def test_a_request_waits_for_a_busy_connection_one_hold_at_most(server):
    state, url = server
    state.next_burst(expected=2)  # a plain POST is held 2 s: a second never comes
    async with httpx.AsyncClient(transport=pooled_transport()) as http:
        async with asyncio.timeout(10):
            await http.post(f"{url}slow")
            await http.post(f"{url}slow")  # reused: the hold is SLOW
            held = asyncio.create_task(http.post(url, content=b"{}"))
            await state.holding(1)
            quick = await http.post(f"{url}quick", content=b"{}")
            # it waited a hold for the held one, then opened a connection
            assert quick.status_code == 200
            assert state.active == 1
            assert state.connections == 2
            state.next_burst(expected=0)
            state._arrived.set()
            assert (await held).status_code == 200


class Moments:
    """httpcore's HTTP/1.1 ``time`` module, with a clock the test steps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def test_an_idle_connection_past_its_keep_alive_is_not_reused(server, monkeypatch):
    state, url = server
    moments = Moments()
    monkeypatch.setattr(httpcore._async.http11, "time", moments)
    monkeypatch.setattr(agora_chat_async._pool, "SWEEP", 3600.0)  # found by the reuse alone
    limits = httpx.Limits(max_connections=5, max_keepalive_connections=5, keepalive_expiry=5.0)
    async with httpx.AsyncClient(transport=pooled_transport(limits)) as http:
        await http.post(f"{url}quick", content=b"{}")
        moments.now += 10.0  # past the keep-alive expiry
        await http.post(f"{url}quick", content=b"{}")
        pool = http._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1
    assert state.connections == 2


async def test_a_connection_the_server_closed_is_not_reused(server):
    state, url = server
    limits = httpx.Limits(max_connections=5, max_keepalive_connections=5)
    async with httpx.AsyncClient(transport=pooled_transport(limits)) as http:
        await http.post(f"{url}close", content=b"{}")
        async with asyncio.timeout(5):
            await state.closed.wait()  # the server's FIN has left (loopback: and arrived)
        response = await http.post(f"{url}quick", content=b"{}")
    assert response.status_code == 200
    assert state.connections == 2


def test_a_proxy_keeps_httpcore_s_own_pool():
    transport = pooled_transport(proxy="http://127.0.0.1:9")
    assert not isinstance(transport._pool, ConnectionPool)


def test_the_client_s_own_http_client_uses_the_pool():
    client = AgoraChatClient("http://127.0.0.1:9", "org", "app", auth=StaticToken("t"))
    http = client._pipeline._transport._http
    assert isinstance(http._transport._pool, ConnectionPool)
