"""A bare HTTP/1.1 server's reading of one request, for tests over a real socket."""

from __future__ import annotations

import asyncio

#: The one answer these servers give: 200 with an empty JSON object.
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The next request's head, its body read (by ``content-length``) and dropped.

    Raises:
        asyncio.IncompleteReadError: the client closed the connection.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return head
