"""The emulator's endpoints of the rest of the message API (``beyond-seeds/``): broadcasts,
messages to selected members, edits, batch recalls, roaming deletions, offline status.

Each follows its page: validation, quotas (the broadcasts' on the emulator's clock, their
days in UTC), the documented answers and errors, and what it changed recorded for tests
(``Emulator.broadcasts``, ``edits``, ``roaming_deletions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ..._rates import BroadcastKind, DailyLimit
from .._asgi import HTTPRequest, HTTPResponse, json_response
from ._history import hour_of
from ._rules import Problem, check_body, invalid, read_json, require_strings
from ._state import BroadcastRecord, Delivery, Edit, RoamingDeletion

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = [
    "batch_recall",
    "broadcast",
    "members",
    "offline_count",
    "offline_status",
    "rewrite",
    "roaming_all",
    "roaming_before",
    "roaming_ids",
]

#: The documented daily-limit refusals of each broadcast (403 ``forbidden_op``).
_DAILY: Final[Mapping[str, str]] = {
    "users": "broadcast message limit exceeded",
    "online_users": "online user broadcast limit exceeded",
    "rooms": "chatroom broadcast limit exceeded",
}
_BROADCAST_PATHS: Final[Mapping[str, str]] = {
    "users": "/messages/broadcast",
    "online_users": "/messages/users/broadcast",
    "rooms": "/messages/chatrooms/broadcast",
}
_MAX_MEMBERS: Final = 20
_MAX_RECALLS: Final = 30
_MAX_ROAMING_IDS: Final = 50
_MAX_EDITS: Final = 10
#: Types an edit may name (the page's example writes ``image`` for ``img``: both pass).
_EDIT_TYPES: Final = {"txt", "img", "image", "audio", "video", "file", "loc", "custom"}


def _require_feature(emulator: Emulator, feature: str, problem: Problem) -> None:
    if feature not in emulator.features:
        raise problem


def _unopened(status: int = 403) -> Problem:
    return Problem(
        status, "forbidden_op", "message broadcast service is unopened", reason="not_enabled"
    )


def _check_sender_and_ext(data: Mapping[str, Any]) -> None:
    if "from" in data and (not isinstance(data["from"], str) or not data["from"]):
        raise invalid("from can't be empty")
    if "ext" in data and not isinstance(data["ext"], dict):
        raise invalid("ext must be JSONObject")


# -- broadcasts ------------------------------------------------------------------------------------


async def broadcast(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    kind: BroadcastKind = params["kind"]  # type: ignore[assignment]
    data = read_json(request)
    _check_sender_and_ext(data)
    if kind == "users":
        if "target_type" not in data:
            raise invalid("target_type must be provided")
        if data["target_type"] != "users":
            raise invalid("target_type can only be 'users'")
    msg = data.get("msg")
    if not isinstance(msg, dict):
        raise Problem(
            400,
            "invalid_request_body",
            "Request body is invalid. Please check body is correct.",
            reason="invalid",
        )
    fields = {key: value for key, value in msg.items() if key != "type"}
    check_body({"type": msg.get("type"), "body": fields}, emulator.max_content_bytes)
    level = data.get("chatroom_msg_level")
    if level is not None and (kind != "rooms" or level not in ("high", "normal", "low")):
        raise invalid("chatroom_msg_level must be high, normal or low (rooms only)")
    _require_feature(emulator, "broadcasts", _unopened())
    await _admit_broadcast(emulator, kind)
    broadcast_id = str(next(emulator._ids))
    emulator.broadcasts.append(
        BroadcastRecord(
            id=broadcast_id,
            to=kind,
            sender=data.get("from", "admin"),
            type=msg["type"],
            msg=fields,
            ext=data.get("ext"),
            level=level,
            timestamp=int(emulator.wall_time() * 1000),
            reached=_reached(emulator, kind),
        )
    )
    # The pages show the id as a JSON number.
    return json_response(200, emulator.envelope(_BROADCAST_PATHS[kind], {"id": int(broadcast_id)}))


async def _admit_broadcast(emulator: Emulator, kind: BroadcastKind) -> None:
    quotas = emulator.call_quotas
    if quotas is None:
        return
    rules = quotas.limits.rules(kind)
    reservation, _, _ = await quotas.try_reserve(kind, rules)
    if reservation is not None:
        return
    daily = next((rule.limit for rule in rules if isinstance(rule, DailyLimit)), None)
    _, today = await quotas.spent(kind)
    if daily is not None and today >= daily:
        raise Problem(403, "forbidden_op", _DAILY[kind], reason=f"limit:broadcast_{kind}:day")
    raise Problem(
        429, "reach_limit", "This request has reached api limit", reason=f"limit:broadcast_{kind}"
    )


def _reached(emulator: Emulator, kind: str) -> tuple[str, ...]:
    """Whom a broadcast reaches now: every user the emulator knows of, the online ones, or
    every chat room that has had a message."""
    if kind == "online_users":
        return tuple(sorted(emulator.online_users))
    if kind == "rooms":
        return tuple(
            sorted({d.recipient for d in emulator.deliveries if d.chat_type == "chatroom"})
        )
    users = {d.recipient for d in emulator.deliveries if d.chat_type == "chat"}
    users |= {d.sender for d in emulator.deliveries if d.sender != "admin"}
    return tuple(sorted(users | emulator.online_users))


# -- messages to selected members ------------------------------------------------------------------


async def members(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    resource = params["resource"]
    data = read_json(request)
    _check_sender_and_ext(data)
    to = data.get("to")
    if not isinstance(to, list) or not to:
        raise invalid("param to can't be empty")
    if len(to) > 1 or not isinstance(to[0], str) or not to[0]:
        raise invalid("to must name one group or chat room")
    users = data.get("users")
    if not isinstance(users, list) or not users:
        raise invalid("param users can't be empty")
    if len(users) > _MAX_MEMBERS or not all(isinstance(u, str) and u for u in users):
        raise invalid(f"users must be at most {_MAX_MEMBERS} user ids")
    check_body(data, emulator.max_content_bytes)
    emulator.admit("other", 1)
    message_id = str(next(emulator._ids))
    now_ms = int(emulator.wall_time() * 1000)
    chat_type = "groupchat" if resource == "chatgroups" else "chatroom"
    for user in users:
        delivery = Delivery(
            message_id=message_id,
            chat_type=chat_type,
            recipient=user,
            target=to[0],
            sender=data.get("from", "admin"),
            type=data["type"],
            body=data["body"],
            ext=data.get("ext"),
            timestamp=now_ms,
            level=data.get("chatroom_msg_level"),
        )
        emulator.delivered_count += 1
        if emulator.record_deliveries:
            emulator.deliveries.append(delivery)
            emulator._by_id.setdefault(message_id, delivery)
            emulator._by_hour[hour_of(now_ms)].append(delivery)
    path = f"/messages/{resource}/users"
    return json_response(200, emulator.envelope(path, {to[0]: message_id}))


# -- edits -----------------------------------------------------------------------------------------


def _rewrite_error(status: int, description: str, error: str = "message_rewrite_error") -> Problem:
    return Problem(status, error, description, reason="rewrite")


async def rewrite(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    message_id = params["msg_id"]
    if not message_id.isdigit():
        raise _rewrite_error(
            400, "The provided message ID is not a valid number.", "InvalidMessageIdException"
        )
    data = read_json(request)
    new = data.get("new_msg")
    if not isinstance(new, dict):
        raise invalid("new_msg is required")
    if "new_ext" in data and not isinstance(data["new_ext"], dict):
        raise invalid("new_ext must be a JSON object")
    merge = data.get("is_combine_ext", True)
    if not isinstance(merge, bool):
        raise invalid("is_combine_ext must be a boolean")
    kind = new.get("type")
    unsupported = "The message is of a type that is currently not supported for modification."
    if kind not in _EDIT_TYPES:
        raise _rewrite_error(400, unsupported)
    _require_feature(
        emulator, "rewrite", _rewrite_error(403, "The rewrite message feature is not open.")
    )
    emulator.admit("other", 1)
    delivery = emulator._by_id.get(message_id)
    if delivery is None or message_id in emulator.recalled:
        raise Problem(
            404,
            "MessageUnavailableException",
            "The message is unavailable or has expired.",
            reason="not_found",
        )
    if delivery.type == "cmd" or {"image": "img"}.get(kind, kind) != delivery.type:
        raise _rewrite_error(400, unsupported)
    if kind == "txt" and not isinstance(new.get("msg"), str):
        raise invalid("new_msg.msg is required for a text message")
    if len(emulator.edits[message_id]) >= _MAX_EDITS:
        raise _rewrite_error(
            403, "The message has reached its edit limit and cannot be modified further."
        )
    emulator.edits[message_id].append(
        Edit(
            user=data.get("user"),
            new_msg=new,
            new_ext=data.get("new_ext"),
            merge_ext=merge,
            timestamp=int(emulator.wall_time() * 1000),
        )
    )
    path = f"/messages/rewrite/{message_id}"
    return json_response(200, emulator.envelope(path, "success", action="put"))


# -- batch recall ----------------------------------------------------------------------------------


async def batch_recall(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    data = read_json(request)
    messages = data.get("msgs")
    if not isinstance(messages, list) or not messages:
        raise invalid("msgs is required and must be a non-empty array")
    if len(messages) > _MAX_RECALLS:
        raise invalid(f"msgs can hold at most {_MAX_RECALLS} messages")
    for entry in messages:
        if not isinstance(entry, dict):
            raise invalid("each of msgs must be a JSON object")
        require_strings(entry, "msg_id", "to")
        if entry.get("chat_type") not in ("chat", "groupchat", "chatroom"):
            raise invalid("chat_type must be chat, groupchat or chatroom")
        if not isinstance(entry.get("force"), bool):
            raise invalid("force is required and must be a boolean")
    emulator.admit("other", 1)
    outcomes = [_recall_one(emulator, entry) for entry in messages]
    return json_response(200, emulator.envelope("/messages/batch_recall", outcomes))


def _recall_one(emulator: Emulator, entry: Mapping[str, Any]) -> dict[str, Any]:
    message_id = entry["msg_id"]
    delivery = emulator._by_id.get(message_id)
    recalled = "yes"
    if delivery is None or message_id in emulator.recalled:
        recalled = "not_found msg"
    elif delivery.recipient != entry["to"] or delivery.chat_type != entry["chat_type"]:
        recalled = "can't find msg to"
    elif (
        not entry["force"]
        and emulator.wall_time() * 1000 - delivery.timestamp > emulator.recall_window * 1000
    ):
        recalled = "exceed recall time limit"
    if recalled == "yes":
        emulator.recalled.add(message_id)
    return {
        "recalled": recalled,
        "chattype": entry["chat_type"],
        "from": entry.get("from", "admin"),
        "to": entry["to"],
        "msg_id": message_id,
    }


# -- roaming deletions -----------------------------------------------------------------------------


def _record_roaming(
    emulator: Emulator,
    request: HTTPRequest,
    params: Mapping[str, str],
    how: str,
    **fields: Any,
) -> HTTPResponse:
    """Check the feature and the quota, record the deletion, answer as the page shows."""
    notify = _notify(request.query)
    _require_feature(
        emulator,
        "roaming",
        Problem(
            400,
            "service open exception",
            "this appKey not open message roaming",
            reason="not_enabled",
        ),
    )
    emulator.admit("other", 1)
    emulator.roaming_deletions.append(
        RoamingDeletion(
            user=params["user"], how=how, chat=params.get("chat"), notify=notify, **fields
        )
    )
    return json_response(
        200, {"requestStatusCode": "ok", "timestamp": int(emulator.wall_time() * 1000)}
    )


def _bad_request() -> Problem:
    return Problem(400, "Bad Request", "Bad Request", reason="invalid")


def _notify(query: Mapping[str, str]) -> bool | None:
    value = query.get("isNotify")
    if value is None:
        return None
    if value not in ("true", "false"):
        raise _bad_request()
    return value == "true"


async def roaming_ids(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    peer = request.query.get("userId" if params["chat"] == "chat" else "groupId")
    ids = [i for i in request.query.get("msgIdList", "").split(",") if i]
    if not peer or not ids:
        raise _bad_request()
    if len(ids) > _MAX_ROAMING_IDS:
        raise Problem(
            400,
            "param exception",
            "delete msg list limit can not greater than 50",
            reason="invalid",
        )
    return _record_roaming(
        emulator, request, params, "ids", conversation=peer, message_ids=tuple(ids)
    )


async def roaming_before(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    peer = request.query.get("userId" if params["chat"] == "chat" else "groupId")
    before = request.query.get("delTime", "")
    if not peer or not before.isdigit():
        raise _bad_request()
    return _record_roaming(
        emulator, request, params, "before", conversation=peer, before=int(before)
    )


async def roaming_all(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    return _record_roaming(emulator, request, params, "all")


# -- offline messages ------------------------------------------------------------------------------


def _offline(emulator: Emulator, user: str) -> list[Delivery]:
    if user in emulator.online_users:
        return []
    return [
        d
        for d in emulator.deliveries
        if d.recipient == user and d.offline and d.message_id not in emulator.recalled
    ]


async def offline_count(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    emulator.admit("other", 1)
    user = params["user"]
    path = f"/users/{user}/offline_msg_count"
    data = {user: len(_offline(emulator, user))}
    return json_response(200, emulator.envelope(path, data, action="get", entities=[], count=0))


async def offline_status(
    emulator: Emulator, request: HTTPRequest, params: Mapping[str, str], host: str
) -> HTTPResponse:
    emulator.authenticate(request)
    emulator.admit("other", 1)
    user, message_id = params["user"], params["msg_id"]
    waiting = {d.message_id for d in _offline(emulator, user)}
    status = "undelivered" if message_id in waiting else "delivered"
    path = f"/users/{user}/offline_msg_status/{message_id}"
    data = {message_id: status}
    return json_response(200, emulator.envelope(path, data, action="get", entities=[], count=0))
