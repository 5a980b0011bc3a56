"""The transport's reading of when a request left (``_transport.py``), over a real socket.

The floor of forward delays is sampled from when a request's body began to leave: its
headers are written first and httpcore yields to the event loop before the body, so a
busy loop holds the body (and the service's count) back. A clock read at each trace
event shows which moment the transport keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from agora_chat_async import ServerTiming
from agora_chat_async._request import Request
from agora_chat_async._transport import HTTPTransport

from .sockets import OK, read_request


class Readings:
    """A clock that notes which httpcore trace event was running when it was read."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.readings: list[str] = []

    def now(self) -> float:
        self.readings.append(self.events[-1] if self.events else "")
        return float(len(self.readings))


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_request(reader)
                writer.write(OK)
                await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield f"http://127.0.0.1:{port}"


async def send(url: str, request: Request) -> tuple[Readings, float | None, bool]:
    """Send *request* through a transport whose trace also notes each event's name."""
    readings = Readings()
    traces: list[object] = []

    async def wrap(built: httpx.Request) -> None:  # an httpx request hook
        trace = built.extensions["trace"]
        traces.append(trace)

        async def noting(event: str, info: object) -> None:
            readings.events.append(event)
            await trace(event, info)

        built.extensions["trace"] = noting

    async with httpx.AsyncClient(event_hooks={"request": [wrap]}) as http:
        transport = HTTPTransport(base=url, http=http, owns_http=False, now=readings.now)
        response = await transport.send(request, transport.build(request, "token"))
        await response.aread()
        await response.aclose()
    response.request.extensions["trace"] = traces[0]  # the transport's own, for sent_at
    return readings, transport.sent_at(response), transport.streamed(response)


async def test_a_request_left_when_its_body_began_to_leave(server: str) -> None:
    readings, sent, streamed = await send(
        server, Request(method="POST", path="/messages", idempotent=False, json={"a": 1})
    )
    assert readings.readings == ["http11.send_request_body.started"]
    assert sent == 1.0
    assert not streamed
    # the headers were sent before, and the body's writing completed after
    started = readings.events.index("http11.send_request_body.started")
    assert "http11.send_request_headers.complete" in readings.events[:started]
    assert "http11.send_request_body.complete" in readings.events[started:]


async def test_an_upload_says_nothing_of_the_network(server: str) -> None:
    files = {"file": ("a.bin", b"x" * 100_000, "application/octet-stream")}
    _, sent, streamed = await send(
        server, Request(method="POST", path="/chatfiles", idempotent=False, files=files)
    )
    assert sent is not None
    assert streamed
    assert not ServerTiming(1.0, 0.0, sent=sent, streamed=True).tells_floor
    assert ServerTiming(1.0, 0.0, sent=sent).tells_floor
