"""Just enough ASGI for the emulator: a parsed request, a response, multipart form data.

The emulator has no web framework dependency. :class:`HTTPRequest` is what a
handler reads, :class:`HTTPResponse` what it returns; :func:`read_request`
and :func:`send_response` move them over an ASGI connection.

Why not Starlette: the emulator needs the raw, still percent-encoded path (an id
holding ``/`` is one segment; Starlette routes on the decoded path), a body refused
as soon as it passes the cap instead of after it is buffered, and a connection dropped
after the response head (a fault), all of which a framework makes awkward. Why not
python-multipart: the body is already read whole and capped by then, which leaves
nothing for a streaming parser to add; the standard library's email parser splits the
form, and the ``testing`` extra stays uvicorn alone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from email import policy
from email.parser import BytesParser
from typing import Any, TypeAlias, final
from urllib.parse import parse_qsl, quote

import attrs
import httpx

__all__ = [
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "BodyTooLargeError",
    "FormFile",
    "HTTPRequest",
    "HTTPResponse",
    "json_response",
    "parse_multipart",
    "read_request",
    "send_response",
]

ASGIScope: TypeAlias = MutableMapping[str, Any]
ASGIReceive: TypeAlias = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend: TypeAlias = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@final
@attrs.frozen
class HTTPRequest:
    """A request as the emulator sees it.

    ``path`` is the raw (still percent-encoded) path, so that an id containing
    ``/`` stays one segment; header names are lower case.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@final
@attrs.frozen
class HTTPResponse:
    """A response: bytes, or an async iterator of bytes for large generated files."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)


class BodyTooLargeError(Exception):
    """The request body is larger than the emulator will read."""


def json_response(
    status: int, payload: object, headers: Mapping[str, str] | None = None
) -> HTTPResponse:
    """A JSON response with the content type the service uses."""
    return HTTPResponse(
        status,
        json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        {"content-type": "application/json;charset=UTF-8", **(headers or {})},
    )


async def read_request(scope: ASGIScope, receive: ASGIReceive, max_body: int) -> HTTPRequest:
    """Read the whole request body, refusing bodies over *max_body* bytes.

    Raises:
        BodyTooLargeError: the body is larger than *max_body*.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    raw_path = scope.get("raw_path") or quote(scope["path"]).encode("latin-1")
    return HTTPRequest(
        method=scope["method"].upper(),
        path=raw_path.decode("latin-1").split("?")[0],
        query=query,
        headers=headers,
        body=b"".join(chunks),
    )


async def send_response(send: ASGISend, response: HTTPResponse, *, drop: bool = False) -> None:
    """Send *response*; with *drop*, send its head and then fail the connection.

    Raises:
        ConnectionDroppedError: when *drop* is set, after the response head was sent.
    """
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if drop:
        raise ConnectionDroppedError("the emulator dropped the connection mid-response (fault)")
    if isinstance(response.body, bytes):
        await send({"type": "http.response.body", "body": response.body})
        return
    async for chunk in response.body:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class ConnectionDroppedError(httpx.RemoteProtocolError):
    """Raised inside the app to abort the connection.

    Over a socket the server closes the connection mid-response. In-process,
    ``httpx.ASGITransport`` re-raises it to the client, which therefore sees the
    same protocol error as over a socket.
    """


@final
@attrs.frozen
class FormFile:
    """A file part of a multipart form."""

    filename: str
    content_type: str
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, FormFile]]:
    """Split a ``multipart/form-data`` body into its plain fields and its file parts.

    Raises:
        ValueError: the body is not multipart form data.
    """
    if (
        not content_type.lower().startswith("multipart/form-data")
        or "boundary=" not in content_type
    ):
        raise ValueError("the request is not multipart/form-data with a boundary")
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ValueError("the multipart body has no parts")
    fields: dict[str, str] = {}
    files: dict[str, FormFile] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = FormFile(filename, part.get_content_type(), data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files
