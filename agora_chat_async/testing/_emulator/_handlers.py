"""The emulator's endpoints, one coroutine each: ``(emulator, request, params, host)``.

Each checks the request with the API's rules (``_rules``), authenticates it, counts it
against the app's quotas (:meth:`Emulator.admit`), changes the emulator's state and
answers with the documented envelope. The route table (``_routes``) passes the path's
parameters in, decoded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from .._asgi import HTTPRequest, HTTPResponse, json_response, parse_multipart
from ._history import hour_of
from ._rules import (
    Problem,
    check_body,
    check_message,
    invalid,
    read_json,
    require_strings,
    unauthorized,
)
from ._state import PLAN_REFUSAL, Delivery, Imported, StoredFile

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = [
    "admissions",
    "delete_conversation",
    "deliveries",
    "download",
    "import_message",
    "recall",
    "reset",
    "send",
    "stats",
    "token",
    "upload",
]

_SEND_KINDS: Final = {"users": "chat", "groups": "groupchat", "rooms": "chatroom"}
_SEND_PATHS: Final = {"users": "users", "chatgroups": "groups", "chatrooms": "rooms"}


async def stats(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    return json_response(200, emulator.stats())


async def admissions(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    # What each quota counted and refused, and when: [limit, Unix ms, units], in order.
    return json_response(
        200,
        {
            "admissions": [list(row) for row in emulator.admissions],
            "refusals": [list(row) for row in emulator.limit_refusals],
        },
    )


async def deliveries(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    # The benchmarks' timeline: when each recipient was delivered, in delivery order.
    timeline = [[d.timestamp, d.chat_type, d.recipient] for d in emulator.deliveries]
    return json_response(200, {"deliveries": timeline})


async def reset(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.reset()
    return json_response(200, emulator.stats())


async def token(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    data = read_json(request)
    if data.get("grant_type") != "client_credentials":
        raise invalid("grant_type must be client_credentials")
    client_id, secret = data.get("client_id"), data.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise invalid("client_id and client_secret are required strings")
    ttl = data.get("ttl", emulator.token_ttl)
    if type(ttl) is not int or ttl <= 0:
        raise invalid("ttl must be a positive integer")
    expected = emulator.clients.get(client_id)
    if expected is None or not hmac.compare_digest(expected, secret):
        raise Problem(
            401, "invalid_grant", "client_id or client_secret is invalid", reason="unauthorized"
        )
    emulator.admit("other", 1)
    token = "YWMt" + secrets.token_urlsafe(32)
    emulator._issued[token] = emulator.clock.now() + ttl
    return json_response(
        200,
        {
            "access_token": token,
            "expires_in": ttl,
            "application": "00000000-emulator-0000-000000000000",
        },
    )


async def send(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    resource = params["resource"]
    kind = _SEND_PATHS[resource]
    if len(request.body) > emulator.max_request_bytes:
        raise Problem(
            413,
            "request_entity_too_large",
            f"the request body is {len(request.body)} bytes; the limit is 5 KB",
            reason="too_large",
        )
    data = read_json(request)
    to = check_message(data, kind, emulator.max_content_bytes)
    emulator.admit("send_calls", 1)
    if emulator.plan_quota is not None and emulator._plan_used + len(to) > emulator.plan_quota:
        refusal = PLAN_REFUSAL
        raise Problem(
            refusal.status,
            refusal.error,
            refusal.description,
            reason="plan",
            exception="ResourceLimitedException",
        )
    emulator.admit(kind, len(to))
    emulator._plan_used += len(to)
    now_ms = int(emulator.wall_time() * 1000)
    hour = hour_of(now_ms)
    sender = data.get("from", "admin")
    chat_type = _SEND_KINDS[kind]
    ids: dict[str, str] = {}
    for recipient in to:
        message_id = str(next(emulator._ids))
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
            offline=chat_type == "chat" and recipient not in emulator.online_users,
        )
        emulator.delivered_count += 1
        if emulator.record_deliveries:
            emulator.deliveries.append(delivery)
            emulator._by_id[message_id] = delivery
            emulator._by_hour[hour].append(delivery)
        ids[recipient] = message_id
    path = "/messages/" + resource
    return json_response(200, emulator.envelope(path, ids))


async def import_message(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    data = read_json(request)
    require_strings(data, "from", "target")
    check_body(data, emulator.max_content_bytes)
    for field in ("is_ack_read", "need_download"):
        if field in data and not isinstance(data[field], bool):
            raise invalid(f"{field} must be a boolean")
    if "msg_timestamp" in data and type(data["msg_timestamp"]) is not int:
        raise invalid("msg_timestamp must be an integer of milliseconds")
    emulator.admit("other", 1)
    resource = params["resource"]
    group = resource == "chatgroups"
    imported = Imported(
        message_id=str(next(emulator._ids)),
        chat_type="groupchat" if group else "chat",
        sender=data["from"],
        target=data["target"],
        type=data["type"],
        body=data["body"],
        is_ack_read=data.get("is_ack_read"),
        msg_timestamp=data.get("msg_timestamp"),
        need_download=data.get("need_download"),
    )
    emulator.imports.append(imported)
    path = f"/messages/{resource}/import"
    return json_response(200, emulator.envelope(path, {"msg_id": imported.message_id}, entities=[]))


async def recall(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    data = read_json(request)
    require_strings(data, "msg_id", "to")
    if data.get("chat_type") not in ("chat", "groupchat", "chatroom"):
        raise invalid("chat_type must be chat, groupchat or chatroom")
    if not isinstance(data.get("force"), bool):
        raise invalid("force is required and must be a boolean")
    if "from" in data and (not isinstance(data["from"], str) or not data["from"]):
        raise invalid("from must be a non-empty string")
    emulator.admit("other", 1)
    message_id = data["msg_id"]
    delivery = emulator._by_id.get(message_id)
    reason: str | None = None
    if delivery is None or message_id in emulator.recalled:
        reason = "not_found msg"
    elif delivery.recipient != data["to"] or delivery.chat_type != data["chat_type"]:
        reason = "can't find msg to"
    elif emulator.wall_time() * 1000 - delivery.timestamp > emulator.recall_window * 1000:
        reason = "exceed recall time limit"
    if reason is not None:
        return json_response(
            200,
            emulator.envelope(
                "/messages/msg_recall", {"msgs": [{"msg_id": message_id, "recalled": reason}]}
            ),
        )
    emulator.recalled.add(message_id)
    return json_response(
        200,
        emulator.envelope(
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


async def delete_conversation(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    username = params["username"]
    data = read_json(request)
    if not isinstance(data.get("channel"), str) or not data["channel"]:
        raise invalid("channel is required and must be a non-empty string")
    if data.get("type") not in ("chat", "groupchat"):
        raise invalid("type must be chat or groupchat")
    if not isinstance(data.get("delete_roam"), bool):
        raise invalid("delete_roam is required and must be a boolean")
    emulator.admit("other", 1)
    emulator.deleted_conversations.append(
        (username, data["channel"], data["type"], data["delete_roam"])
    )
    return json_response(
        200,
        emulator.envelope("/users/user_channel", {"result": "ok"}, action="delete", entities=[]),
    )


async def upload(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    try:
        fields, files = parse_multipart(request.headers.get("content-type", ""), request.body)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    upload = files.get("file")
    if upload is None:
        raise invalid("the form has no 'file' part")
    if len(upload.data) > emulator.max_file_bytes:
        raise Problem(413, "file_too_large", "files are limited to 10 MB", reason="too_large")
    size = []
    for field in ("thumbnail-width", "thumbnail-height"):
        value = fields.get(field, "170")
        if not value.isdigit() or int(value) <= 0:
            raise invalid(f"{field} must be a positive number of pixels")
        size.append(int(value))
    restricted = request.headers.get("restrict-access", "false").lower() == "true"
    emulator.admit("other", 1)
    file_id = str(uuid.UUID(int=emulator._rng.getrandbits(128)))
    thumbnail = upload.data
    if len(upload.data) > 10 * 1024:
        digest = hashlib.sha256(upload.data).hexdigest().encode()
        thumbnail = b"thumbnail %dx%d of " % (size[0], size[1]) + digest
    stored = StoredFile(upload.data, thumbnail, secrets.token_urlsafe(24), restricted)
    emulator._files[file_id] = stored
    entity = {"uuid": file_id, "type": "chatfile", "share-secret": stored.share_secret}
    return json_response(
        200,
        {
            "action": "post",
            "application": "00000000-emulator-0000-000000000000",
            "path": "/chatfiles",
            "uri": f"http://emulator/{emulator.org_name}/{emulator.app_name}/chatfiles",
            "entities": [entity],
            "timestamp": int(emulator.wall_time() * 1000),
            "duration": 0,
            "organization": emulator.org_name,
            "applicationName": emulator.app_name,
        },
    )


async def download(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    emulator.admit("other", 1)
    stored = emulator._files.get(params["uuid"])
    if stored is None:
        raise Problem(404, "file_not_found", "no file with this uuid", reason="not_found")
    if stored.restricted:
        given = request.headers.get("share-secret", "")
        if not hmac.compare_digest(given, stored.share_secret):
            raise unauthorized("the file is restricted: a valid share-secret is required")
    thumbnail = request.headers.get("thumbnail", "false").lower() == "true"
    return HTTPResponse(
        200,
        stored.thumbnail if thumbnail else stored.data,
        {"content-type": "application/octet-stream"},
    )
