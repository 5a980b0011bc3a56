"""The emulator refuses each bad request the reference pages let us derive, as the service does.

Requests are made with raw httpx against the ASGI app, so the client's own validation
does not get in the way.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from agora_chat_async._accesstoken import build_chat_app_token
from agora_chat_async.testing import Emulator, MockClock

APP_ID = "970CA35de60c44645bbae8a215061b33"
CERTIFICATE = "5CFd2fd1755d40ecb72977518be15d3b"
AUTH = {"Authorization": "Bearer test-token"}
TEXT: dict[str, Any] = {"type": "txt", "body": {"msg": "hello"}}


def message(**fields: Any) -> dict[str, Any]:
    return {"to": ["u1"], **TEXT, **fields}


def body(kind: str, **fields: Any) -> dict[str, Any]:
    return {"to": ["u1"], "type": kind, "body": fields}


IMAGE = {"filename": "a.jpg", "url": "https://x/chatfiles/1", "size": {"width": 1, "height": 1}}

# (case id, method, path, headers, JSON body or raw bytes, status, error, words in description)
CASES: list[tuple[str, str, str, dict[str, str], Any, int, str, str]] = [
    (
        "no token",
        "POST",
        "/messages/users",
        {},
        message(),
        401,
        "auth_bad_access_token",
        "missing access token",
    ),
    (
        "wrong token",
        "POST",
        "/messages/users",
        {"Authorization": "Bearer nope"},
        message(),
        401,
        "auth_bad_access_token",
        "corrupt access token",
    ),
    (
        "not bearer",
        "POST",
        "/messages/users",
        {"Authorization": "Basic dGVzdA=="},
        message(),
        401,
        "auth_bad_access_token",
        "corrupt",
    ),
    (
        "app token, wrong certificate",
        "POST",
        "/messages/users",
        {"Authorization": "Bearer " + build_chat_app_token(APP_ID, "0" * 32, expire=600)},
        message(),
        401,
        "auth_bad_access_token",
        "corrupt",
    ),
    (
        "app token, other app id",
        "POST",
        "/messages/users",
        {"Authorization": "Bearer " + build_chat_app_token("1" * 32, CERTIFICATE, expire=600)},
        message(),
        401,
        "auth_bad_access_token",
        "corrupt",
    ),
    (
        "app token, expired",
        "POST",
        "/messages/users",
        {
            "Authorization": "Bearer "
            + build_chat_app_token(APP_ID, CERTIFICATE, expire=60, issue_ts=1_600_000_000)
        },
        message(),
        401,
        "auth_bad_access_token",
        "expired",
    ),
    (
        "token: wrong secret",
        "POST",
        "/token",
        {},
        {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "bad"},
        401,
        "invalid_grant",
        "invalid",
    ),
    (
        "token: wrong grant",
        "POST",
        "/token",
        {},
        {"grant_type": "password", "client_id": "cid", "client_secret": "secret"},
        400,
        "illegal_argument",
        "grant_type",
    ),
    (
        "token: bad ttl",
        "POST",
        "/token",
        {},
        {
            "grant_type": "client_credentials",
            "client_id": "cid",
            "client_secret": "secret",
            "ttl": -5,
        },
        400,
        "illegal_argument",
        "ttl",
    ),
    (
        "not JSON",
        "POST",
        "/messages/users",
        AUTH,
        b"{to: [u1]",
        400,
        "illegal_argument",
        "not valid JSON",
    ),
    ("JSON array", "POST", "/messages/users", AUTH, [1], 400, "illegal_argument", "JSON object"),
    ("to missing", "POST", "/messages/users", AUTH, TEXT, 400, "illegal_argument", "to is"),
    ("to empty", "POST", "/messages/users", AUTH, message(to=[]), 400, "illegal_argument", "to is"),
    (
        "to not strings",
        "POST",
        "/messages/users",
        AUTH,
        message(to=["a", 5]),
        400,
        "illegal_argument",
        "non-empty strings",
    ),
    (
        "to repeats an id",
        "POST",
        "/messages/users",
        AUTH,
        message(to=["a", "a"]),
        400,
        "illegal_argument",
        "twice",
    ),
    (
        "601 users",
        "POST",
        "/messages/users",
        AUTH,
        message(to=[str(i) for i in range(601)]),
        400,
        "illegal_argument",
        "at most 600",
    ),
    (
        "4 groups",
        "POST",
        "/messages/chatgroups",
        AUTH,
        message(to=["1", "2", "3", "4"]),
        400,
        "illegal_argument",
        "at most 3",
    ),
    (
        "11 rooms",
        "POST",
        "/messages/chatrooms",
        AUTH,
        message(to=[str(i) for i in range(11)]),
        400,
        "illegal_argument",
        "at most 10",
    ),
    (
        "unknown type",
        "POST",
        "/messages/users",
        AUTH,
        body("sticker", id="1"),
        400,
        "illegal_argument",
        "type must be",
    ),
    (
        "body missing",
        "POST",
        "/messages/users",
        AUTH,
        {"to": ["u1"], "type": "txt"},
        400,
        "illegal_argument",
        "body is required",
    ),
    (
        "txt without msg",
        "POST",
        "/messages/users",
        AUTH,
        body("txt"),
        400,
        "illegal_argument",
        "body.msg is required",
    ),
    (
        "msg not a string",
        "POST",
        "/messages/users",
        AUTH,
        body("txt", msg=5),
        400,
        "illegal_argument",
        "body.msg must be a string",
    ),
    (
        "img without size",
        "POST",
        "/messages/users",
        AUTH,
        body("img", filename="a.jpg", url="u"),
        400,
        "illegal_argument",
        "body.size is required",
    ),
    (
        "img size not integers",
        "POST",
        "/messages/users",
        AUTH,
        body("img", **{**IMAGE, "size": {"width": "1", "height": 1}}),
        400,
        "illegal_argument",
        "body.size.width",
    ),
    (
        "audio length not an integer",
        "POST",
        "/messages/users",
        AUTH,
        body("audio", filename="a.amr", url="u", length="10"),
        400,
        "illegal_argument",
        "body.length must be an integer",
    ),
    (
        "video without file_length",
        "POST",
        "/messages/users",
        AUTH,
        body("video", url="u", length=1),
        400,
        "illegal_argument",
        "body.file_length is required",
    ),
    (
        "file without url",
        "POST",
        "/messages/users",
        AUTH,
        body("file", filename="a"),
        400,
        "illegal_argument",
        "body.url is required",
    ),
    (
        "loc lat not a string",
        "POST",
        "/messages/users",
        AUTH,
        body("loc", lat=39.9, lng="116.3", addr="x"),
        400,
        "illegal_argument",
        "body.lat must be a string",
    ),
    (
        "cmd without action",
        "POST",
        "/messages/users",
        AUTH,
        body("cmd"),
        400,
        "illegal_argument",
        "body.action is required",
    ),
    (
        "customEvent pattern",
        "POST",
        "/messages/users",
        AUTH,
        body("custom", customEvent="no spaces allowed"),
        400,
        "illegal_argument",
        "customEvent",
    ),
    (
        "customEvent too long",
        "POST",
        "/messages/users",
        AUTH,
        body("custom", customEvent="x" * 33),
        400,
        "illegal_argument",
        "customEvent",
    ),
    (
        "17 customExts",
        "POST",
        "/messages/users",
        AUTH,
        body("custom", customExts={f"k{i}": "v" for i in range(17)}),
        400,
        "illegal_argument",
        "at most 16",
    ),
    (
        "customExts not strings",
        "POST",
        "/messages/users",
        AUTH,
        body("custom", customExts={"k": 1}),
        400,
        "illegal_argument",
        "Map<String,String>",
    ),
    (
        "ext null",
        "POST",
        "/messages/users",
        AUTH,
        message(ext=None),
        400,
        "illegal_argument",
        "cannot be null",
    ),
    (
        "from empty",
        "POST",
        "/messages/users",
        AUTH,
        message(**{"from": ""}),
        400,
        "illegal_argument",
        "from must be",
    ),
    (
        "sync_device not boolean",
        "POST",
        "/messages/users",
        AUTH,
        message(sync_device="yes"),
        400,
        "illegal_argument",
        "sync_device",
    ),
    (
        "routetype unknown",
        "POST",
        "/messages/users",
        AUTH,
        message(routetype="ROUTE_ALL"),
        400,
        "illegal_argument",
        "ROUTE_ONLINE",
    ),
    (
        "msg_timestamp not an integer",
        "POST",
        "/messages/users",
        AUTH,
        message(msg_timestamp="now"),
        400,
        "illegal_argument",
        "msg_timestamp",
    ),
    (
        "room level unknown",
        "POST",
        "/messages/chatrooms",
        AUTH,
        message(chatroom_msg_level="urgent"),
        400,
        "illegal_argument",
        "high, normal or low",
    ),
    (
        "room level on a user send",
        "POST",
        "/messages/users",
        AUTH,
        message(chatroom_msg_level="high"),
        400,
        "illegal_argument",
        "chat room messages only",
    ),
    (
        "request over 5 KB",
        "POST",
        "/messages/users",
        AUTH,
        message(to=[f"user-{i:020d}" for i in range(200)]),
        413,
        "request_entity_too_large",
        "5 KB",
    ),
    (
        "body and ext over 3 KB",
        "POST",
        "/messages/users",
        AUTH,
        message(body={"msg": "x" * 2000}, ext={"k": "y" * 1100}),
        400,
        "illegal_argument",
        "3 KB",
    ),
    (
        "recall without force",
        "POST",
        "/messages/msg_recall",
        AUTH,
        {"msg_id": "1", "to": "u1", "chat_type": "chat"},
        400,
        "illegal_argument",
        "force",
    ),
    (
        "recall without to",
        "POST",
        "/messages/msg_recall",
        AUTH,
        {"msg_id": "1", "chat_type": "chat", "force": False},
        400,
        "illegal_argument",
        "to is",
    ),
    (
        "recall chat_type unknown",
        "POST",
        "/messages/msg_recall",
        AUTH,
        {"msg_id": "1", "to": "u", "chat_type": "private", "force": False},
        400,
        "illegal_argument",
        "chat_type",
    ),
    (
        "delete conversation of a room",
        "DELETE",
        "/users/u1/user_channel",
        AUTH,
        {"channel": "r1", "type": "chatroom", "delete_roam": True},
        400,
        "illegal_argument",
        "chat or groupchat",
    ),
    (
        "delete conversation without delete_roam",
        "DELETE",
        "/users/u1/user_channel",
        AUTH,
        {"channel": "u2", "type": "chat"},
        400,
        "illegal_argument",
        "delete_roam",
    ),
    (
        "import without from",
        "POST",
        "/messages/users/import",
        AUTH,
        {"target": "u2", **TEXT},
        400,
        "illegal_argument",
        "from is required",
    ),
    (
        "import with a bad body",
        "POST",
        "/messages/chatgroups/import",
        AUTH,
        {"from": "u1", "target": "g1", "type": "img", "body": {"url": "u"}},
        400,
        "illegal_argument",
        "body.filename is required",
    ),
    (
        "history hour malformed",
        "GET",
        "/chatmessages/2018-11-27",
        AUTH,
        None,
        400,
        "illegal_argument",
        "yyyyMMddHH",
    ),
    (
        "history of an empty hour",
        "GET",
        "/chatmessages/2018112717",
        AUTH,
        None,
        404,
        "storage_object_not_found",
        "no history",
    ),
    (
        "download unknown file",
        "GET",
        "/chatfiles/nope",
        AUTH,
        None,
        404,
        "file_not_found",
        "no file",
    ),
    (
        "upload without multipart",
        "POST",
        "/chatfiles",
        AUTH,
        {"file": "x"},
        400,
        "illegal_argument",
        "multipart",
    ),
    (
        "unknown resource",
        "GET",
        "/messages/nowhere",
        AUTH,
        None,
        404,
        "service_resource_not_found",
        "no resource",
    ),
    (
        "wrong method",
        "GET",
        "/messages/users",
        AUTH,
        None,
        405,
        "method_not_allowed",
        "not allowed",
    ),
]


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(
        clients={"cid": "secret"},
        app_id=APP_ID,
        app_certificate=CERTIFICATE,
        clock=MockClock(start=0.0),
    )


async def call(
    emulator: Emulator,
    method: str,
    path: str,
    headers: dict[str, str],
    payload: Any,
    org: str = "test-org",
) -> httpx.Response:
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        content = (
            payload
            if isinstance(payload, bytes)
            else (None if payload is None else json.dumps(payload).encode())
        )
        return await http.request(
            method, f"/{org}/test-app{path}", headers=headers, content=content
        )


@pytest.mark.parametrize(
    ("method", "path", "headers", "payload", "status", "error", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_refusal(emulator, method, path, headers, payload, status, error, words):
    response = await call(emulator, method, path, headers, payload)
    assert response.status_code == status, response.text
    error_body = response.json()
    assert error_body["error"] == error
    assert words in error_body["error_description"]
    assert set(error_body) >= {"error", "exception", "timestamp", "duration", "error_description"}
    assert emulator.deliveries == []


def test_there_are_at_least_25_distinct_refusals():
    assert len({case[0] for case in CASES}) >= 25


async def test_unknown_org_or_app(emulator):
    response = await call(emulator, "POST", "/messages/users", AUTH, message(), org="other")
    assert response.status_code == 404
    assert response.json()["error"] == "organization_application_not_found"


async def test_an_issued_token_expires_and_can_be_revoked(emulator):
    clock = emulator.clock
    issued = await call(
        emulator,
        "POST",
        "/token",
        {},
        {
            "grant_type": "client_credentials",
            "client_id": "cid",
            "client_secret": "secret",
            "ttl": 100,
        },
    )
    assert issued.status_code == 200
    assert issued.json()["expires_in"] == 100
    bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert (await call(emulator, "POST", "/messages/users", bearer, message())).status_code == 200
    clock.advance(100)
    expired = await call(emulator, "POST", "/messages/users", bearer, message())
    assert expired.status_code == 401
    assert "expired" in expired.json()["error_description"]
    again = await call(
        emulator,
        "POST",
        "/token",
        {},
        {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "secret"},
    )
    bearer = {"Authorization": f"Bearer {again.json()['access_token']}"}
    emulator.revoke_tokens()
    assert (await call(emulator, "POST", "/messages/users", bearer, message())).status_code == 401


async def test_a_valid_app_token_is_accepted(emulator):
    token = build_chat_app_token(APP_ID, CERTIFICATE, expire=600)
    response = await call(
        emulator, "POST", "/messages/users", {"Authorization": f"Bearer {token}"}, message()
    )
    assert response.status_code == 200
