"""The API's rules as the emulator enforces them: its own copy, not the client's.

A test oracle must not share the code it checks: these validate requests the way the
reference pages describe them, independently of ``agora_chat_async._validate`` and the
client's models. A broken rule answers with the documented 400 body (:func:`invalid`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from .._asgi import HTTPRequest

__all__ = [
    "CAPS",
    "Problem",
    "check_body",
    "check_message",
    "compact",
    "invalid",
    "read_json",
    "require_strings",
    "unauthorized",
]

CAPS: Final = {"users": 600, "groups": 3, "rooms": 10}
_MESSAGE_TYPES: Final = ("txt", "img", "audio", "video", "file", "loc", "cmd", "custom")
_CUSTOM_EVENT: Final = re.compile(r"[a-zA-Z0-9\-_/.]{1,32}")


class Problem(Exception):  # noqa: N818 - internal control flow, not an error of the library
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


def invalid(description: str) -> Problem:
    return Problem(400, "illegal_argument", description, reason="invalid")


def unauthorized(description: str) -> Problem:
    return Problem(
        401,
        "auth_bad_access_token",
        description,
        reason="unauthorized",
        exception="org.apache.usergrid.rest.exceptions.SecurityException",
    )


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def require_strings(data: Mapping[str, Any], *fields: str) -> None:
    """Each of *fields* is a required, non-empty string, or a 400 naming it."""
    for field in fields:
        if not isinstance(data.get(field), str) or not data[field]:
            raise invalid(f"{field} is required and must be a non-empty string")


def read_json(request: HTTPRequest) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise invalid("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("the request body must be a JSON object")
    return data


# -- validation of message requests ---------------------------------------------------------------


def check_message(data: Mapping[str, Any], kind: str, max_content_bytes: int) -> list[str]:
    """Validate a send request as the reference describes it; return its recipients."""
    to = data.get("to")
    if not isinstance(to, list) or not to:
        raise invalid("to is required and must be a non-empty array")
    if not all(isinstance(item, str) and item for item in to):
        raise invalid("to must contain non-empty strings")
    if len(set(to)) != len(to):
        raise invalid("to contains the same id twice")
    if len(to) > CAPS[kind]:
        raise invalid(f"to names {len(to)} targets; at most {CAPS[kind]} per request")
    if "from" in data and (not isinstance(data["from"], str) or not data["from"]):
        raise invalid("from must be a non-empty string when given")
    if "sync_device" in data and not isinstance(data["sync_device"], bool):
        raise invalid("sync_device must be a boolean")
    if "routetype" in data and data["routetype"] != "ROUTE_ONLINE":
        raise invalid("routetype must be ROUTE_ONLINE when given")
    if "msg_timestamp" in data and (
        type(data["msg_timestamp"]) is not int or data["msg_timestamp"] < 0
    ):
        raise invalid("msg_timestamp must be an integer of milliseconds")
    if "chatroom_msg_level" in data:
        if kind != "rooms":
            raise invalid("chatroom_msg_level applies to chat room messages only")
        if data["chatroom_msg_level"] not in ("high", "normal", "low"):
            raise invalid("chatroom_msg_level must be high, normal or low")
    check_body(data, max_content_bytes)
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


def check_body(data: Mapping[str, Any], max_content_bytes: int) -> None:
    kind = data.get("type")
    if kind not in _MESSAGE_TYPES:
        raise invalid(f"type must be one of {', '.join(_MESSAGE_TYPES)}")
    body = data.get("body")
    if not isinstance(body, dict):
        raise invalid("body is required and must be a JSON object")
    if "ext" in data and not isinstance(data["ext"], dict):
        raise invalid("ext must be a JSON object; it cannot be null")
    for field, expected in _REQUIRED[kind].items():
        if field not in body:
            raise invalid(f"body.{field} is required for {kind} messages")
        _check_type(f"body.{field}", body[field], expected)
    for field, expected in _OPTIONAL.get(kind, {}).items():
        if field in body:
            _check_type(f"body.{field}", body[field], expected)
    if isinstance(body.get("size"), dict):
        for side in ("width", "height"):
            if type(body["size"].get(side)) is not int or body["size"][side] < 0:
                raise invalid(f"body.size.{side} must be a non-negative integer")
    if kind == "custom":
        _check_custom(body)
    size = len(compact(body)) + (len(compact(data["ext"])) if "ext" in data else 0)
    if size > max_content_bytes:
        raise invalid(f"body plus ext is {size} bytes; the limit is 3 KB")


def _check_custom(body: Mapping[str, Any]) -> None:
    event = body.get("customEvent")
    if event is not None and not _CUSTOM_EVENT.fullmatch(event):
        raise invalid("body.customEvent must match [a-zA-Z0-9-_/.]{1,32}")
    exts = body.get("customExts")
    if exts is not None:
        if len(exts) > 16:
            raise invalid("body.customExts allows at most 16 entries")
        if not all(isinstance(v, str) for v in exts.values()):
            raise invalid("body.customExts must be a Map<String,String>")


def _check_type(field: str, value: object, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, expected):
        names = (
            expected.__name__
            if isinstance(expected, type)
            else "/".join(t.__name__ for t in expected)
        )
        kind = {"str": "a string", "int": "an integer", "dict": "a JSON object"}.get(names, names)
        raise invalid(f"{field} must be {kind}")
    if isinstance(value, str) and not value and field != "body.msg":
        raise invalid(f"{field} must not be empty")
