"""The emulator's raw ASGI layer: raw paths, capped bodies, dropped connections, multipart."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agora_chat_async.testing._asgi import (
    BodyTooLargeError,
    ConnectionDroppedError,
    HTTPResponse,
    json_response,
    parse_multipart,
    read_request,
    send_response,
)


def receiver(*chunks: bytes) -> Any:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


SCOPE = {
    "method": "post",
    "path": "/org/app/users/a/b",
    "raw_path": b"/org/app/users/a%2Fb?x=1",
    "query_string": b"x=1&y=two",
    "headers": [(b"Content-Type", b"application/json"), (b"X-Thing", b"v")],
}


async def test_a_request_keeps_its_raw_path_and_joins_its_body_chunks():
    request = await read_request(SCOPE, receiver(b'{"a":', b" 1}"), max_body=100)
    assert request.method == "POST"
    assert request.path == "/org/app/users/a%2Fb"  # an id with "/" stays one segment
    assert request.query == {"x": "1", "y": "two"}
    assert request.headers == {"content-type": "application/json", "x-thing": "v"}
    assert request.body == b'{"a": 1}'


async def test_a_body_over_the_cap_is_refused_before_it_is_all_read():
    read: list[int] = []

    async def receive() -> dict[str, Any]:
        read.append(1)
        return {"type": "http.request", "body": b"x" * 60, "more_body": True}

    with pytest.raises(BodyTooLargeError):
        await read_request(SCOPE, receive, max_body=100)
    assert len(read) == 2  # stopped at the chunk that crossed the cap


async def test_a_response_is_sent_whole_or_dropped_after_its_head():
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await send_response(send, json_response(200, {"ok": "é"}, {"x-extra": "1"}))
    assert sent[0]["status"] == 200
    assert (b"content-type", b"application/json;charset=UTF-8") in sent[0]["headers"]
    assert sent[1]["body"] == '{"ok": "é"}'.encode()
    sent.clear()
    with pytest.raises(ConnectionDroppedError):
        await send_response(send, HTTPResponse(200, b"never"), drop=True)
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert issubclass(ConnectionDroppedError, httpx.RemoteProtocolError)


async def test_a_streamed_body_is_sent_in_chunks_then_closed():
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def chunks():
        yield b"ab"
        yield b"cd"

    await send_response(send, HTTPResponse(200, chunks()))
    assert [m.get("body") for m in sent[1:]] == [b"ab", b"cd", b""]
    assert sent[-1].get("more_body", False) is False


def test_a_multipart_form_splits_into_fields_and_files():
    request = httpx.Request(
        "POST", "http://e/", data={"restrict-access": "true"}, files={"file": ("a.png", b"\x89P")}
    )
    request.read()
    fields, files = parse_multipart(request.headers["content-type"], request.content)
    assert fields == {"restrict-access": "true"}
    assert files["file"].filename == "a.png"
    assert files["file"].data == b"\x89P"
    with pytest.raises(ValueError, match="multipart"):
        parse_multipart("application/json", b"{}")
