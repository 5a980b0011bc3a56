"""History archives: signed links, and gzip JSON-lines files built from what was delivered."""

from __future__ import annotations

import hmac
import itertools
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel

from .._asgi import HTTPRequest, HTTPResponse, json_response
from ._rules import Problem, compact, invalid
from ._state import Delivery

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = ["history_file", "history_link", "hour_of", "sign"]

_ACCESS_DENIED: Final = (
    b'<?xml version="1.0"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired or is not signed</Message></Error>"
)


async def history_link(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    hour = params["hour"]
    try:
        datetime.strptime(hour, "%Y%m%d%H")
    except ValueError:
        raise invalid("time must be yyyyMMddHH") from None
    if len(hour) != 10:
        raise invalid("time must be yyyyMMddHH")
    emulator.admit("other", 1)
    if not emulator._by_hour.get(hour) and not emulator.history_filler:
        raise Problem(404, "storage_object_not_found", f"no history for {hour}", reason="not_found")
    expires = int(emulator.wall_time()) + 3600
    signature = sign(emulator, hour, expires)
    url = (
        f"{host}/_emulator/history/{emulator.org_name}/{emulator.app_name}/{hour}"
        f"?Expires={expires}&OSSAccessKeyId=emulator&Signature={signature}"
    )
    return json_response(
        200, emulator.envelope(f"/chatmessages/{hour}", [{"url": url}], action="get")
    )


def sign(emulator: Emulator, hour: str, expires: int) -> str:
    """The signature of a history link for *hour*, valid until *expires* (Unix seconds)."""
    return hmac.new(emulator._signing_key, f"{hour}:{expires}".encode(), "sha256").hexdigest()


async def history_file(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    org, app, hour = params["org"], params["app"], params["hour"]
    expires = request.query.get("Expires", "")
    signature = request.query.get("Signature", "")
    denied = HTTPResponse(403, _ACCESS_DENIED, {"content-type": "application/xml"})
    if (org, app) != (emulator.org_name, emulator.app_name) or not expires.isdigit():
        return denied
    if not hmac.compare_digest(signature, sign(emulator, hour, int(expires))):
        return denied
    if int(expires) < emulator.wall_time():
        return denied
    records = [_history_record(delivery) for delivery in emulator._by_hour.get(hour, ())]
    return HTTPResponse(
        200,
        _gzip_lines(hour, records, emulator.history_filler),
        {"content-type": "application/octet-stream"},
    )


async def _gzip_lines(
    hour: str, records: list[dict[str, Any]], filler: int
) -> AsyncIterator[bytes]:
    deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    base_ms = int(datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC).timestamp() * 1000)
    pending: list[bytes] = []
    for index, record in enumerate(itertools.chain(records, _filler(filler, base_ms))):
        pending.append(compact(record) + b"\n")
        if len(pending) >= 256:
            yield deflate.compress(b"".join(pending))
            pending.clear()
            if index % 4096 == 0:
                await anyio.lowlevel.checkpoint()
    yield deflate.compress(b"".join(pending)) + deflate.flush()


def hour_of(timestamp_ms: int) -> str:
    """The UTC hour ``yyyyMMddHH`` of Unix milliseconds: the key of a history file."""
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
