"""Sending to users, groups and rooms, built from the reference's request and response examples."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import httpx
import pytest

from agora_chat_async import (
    DEFAULT_RATE_LIMITS,
    AudioBody,
    AuthenticationError,
    BadRequestError,
    CmdBody,
    ConnectError,
    CustomBody,
    FileBody,
    ImageBody,
    ImageSize,
    LocationBody,
    OutcomeUnknownError,
    Rate,
    RateLimitedError,
    RateLimits,
    ServerError,
    TextBody,
    ValidationError,
    VideoBody,
)

from .conftest import envelope, json_body

PATHS = {
    "users": "/messages/users",
    "groups": "/messages/chatgroups",
    "rooms": "/messages/chatrooms",
}


def echo_ids(path: str):
    """A server that answers each recipient with a message id, as the reference shows."""

    def handler(request: httpx.Request) -> httpx.Response:
        to = json_body(request)["to"]
        data = {recipient: f"10294575008705{index:05d}" for index, recipient in enumerate(to)}
        return httpx.Response(200, json=envelope(path, data))

    return handler


def send(client, kind: str):
    return {
        "users": client.send_user_message,
        "groups": client.send_group_message,
        "rooms": client.send_room_message,
    }[kind]


# The reference's request examples: body JSON and the body object that produces it.
EXAMPLES = [
    ({"msg": "testmessages"}, "txt", TextBody(msg="testmessages")),
    (
        {
            "filename": "testimg.jpg",
            "secret": "VfXXXXNb_",
            "url": "https://XXXX/XXXX/XXXX/chatfiles/55f12940-XXXX-XXXX-8a5b-ff2336f03252",
            "size": {"width": 480, "height": 720},
        },
        "img",
        ImageBody(
            filename="testimg.jpg",
            secret="VfXXXXNb_",
            url="https://XXXX/XXXX/XXXX/chatfiles/55f12940-XXXX-XXXX-8a5b-ff2336f03252",
            size=ImageSize(width=480, height=720),
        ),
    ),
    (
        {
            "url": "https://XXXX/XXXX/XXXX/chatfiles/1dfc7f50-XXXX-XXXX-8a07-7d75b8fb3d42",
            "filename": "testaudio.amr",
            "length": 10,
            "secret": "HfXXXXCjM",
        },
        "audio",
        AudioBody(
            url="https://XXXX/XXXX/XXXX/chatfiles/1dfc7f50-XXXX-XXXX-8a07-7d75b8fb3d42",
            filename="testaudio.amr",
            length=10,
            secret="HfXXXXCjM",
        ),
    ),
    (
        {
            "thumb": "https://XXXX/XXXX/XXXX/chatfiles/67279b20-7f69-11e4-8eee-21d3334b3a97",
            "length": 0,
            "secret": "VfXXXXNb_",
            "file_length": 58103,
            "thumb_secret": "ZyXXXX2I",
            "url": "https://XXXX/XXXX/XXXX/chatfiles/671dfe30-XXXX-XXXX-ba67-8fef0d502f46",
        },
        "video",
        VideoBody(
            thumb="https://XXXX/XXXX/XXXX/chatfiles/67279b20-7f69-11e4-8eee-21d3334b3a97",
            length=0,
            secret="VfXXXXNb_",
            file_length=58103,
            thumb_secret="ZyXXXX2I",
            url="https://XXXX/XXXX/XXXX/chatfiles/671dfe30-XXXX-XXXX-ba67-8fef0d502f46",
        ),
    ),
    (
        {
            "filename": "test.txt",
            "secret": "1-g0XXXXua",
            "url": "https://XXXX/XXXX/XXXX/chatfiles/d7eXXXX7444",
        },
        "file",
        FileBody(
            filename="test.txt",
            secret="1-g0XXXXua",
            url="https://XXXX/XXXX/XXXX/chatfiles/d7eXXXX7444",
        ),
    ),
    (
        {"lat": "39.966", "lng": "116.322", "addr": "中国北京市海淀区中关村"},
        "loc",
        LocationBody(lat="39.966", lng="116.322", addr="中国北京市海淀区中关村"),
    ),
    ({"action": "action1"}, "cmd", CmdBody(action="action1")),
    ({"customEvent": "custom_event"}, "custom", CustomBody(custom_event="custom_event")),
]
TARGETS = {"users": "user2", "groups": "184524748161025", "rooms": "185145305923585"}


@pytest.mark.parametrize("kind", ["users", "groups", "rooms"])
@pytest.mark.parametrize(("wire_body", "wire_type", "body"), EXAMPLES)
async def test_reference_request_examples(client, api, kind, wire_body, wire_type, body):
    route = api.post(PATHS[kind]).mock(
        return_value=httpx.Response(
            200, json=envelope(PATHS[kind], {TARGETS[kind]: "1029457500870543736"})
        )
    )
    result = await send(client, kind)([TARGETS[kind]], body, sender="user1")
    request = route.calls.last.request
    assert json_body(request) == {
        "from": "user1",
        "to": [TARGETS[kind]],
        "type": wire_type,
        "body": wire_body,
    }
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert result.message_ids == {TARGETS[kind]: "1029457500870543736"}
    assert result.ok


@pytest.mark.parametrize("kind", ["users", "groups", "rooms"])
async def test_online_only_and_sync_device(client, api, kind):
    route = api.post(PATHS[kind]).mock(side_effect=echo_ids(PATHS[kind]))
    await send(client, kind)(
        TARGETS[kind],
        TextBody(msg="testmessages"),
        sender="user1",
        online_only=True,
        sync_device=True,
    )
    assert json_body(route.calls.last.request) == {
        "from": "user1",
        "to": [TARGETS[kind]],
        "type": "txt",
        "body": {"msg": "testmessages"},
        "routetype": "ROUTE_ONLINE",
        "sync_device": True,
    }


async def test_ext_and_timestamp_are_sent_and_none_is_never_sent(client, api):
    route = api.post("/messages/users").mock(side_effect=echo_ids("/messages/users"))
    when = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    await client.send_user_message(
        "u", TextBody(msg="m"), ext={"em_push": {"title": "t"}}, msg_timestamp=when
    )
    body = json_body(route.calls.last.request)
    assert body["ext"] == {"em_push": {"title": "t"}}
    assert body["msg_timestamp"] == int(when.timestamp() * 1000)
    await client.send_user_message("u", TextBody(msg="m"))
    body = json_body(route.calls.last.request)
    assert "ext" not in body
    assert "from" not in body
    assert None not in body.values()


@pytest.mark.parametrize("level", ["high", "normal", "low"])
async def test_room_level(client, api, level):
    route = api.post("/messages/chatrooms").mock(side_effect=echo_ids("/messages/chatrooms"))
    await client.send_room_message("r1", TextBody(msg="m"), level=level)
    assert json_body(route.calls.last.request)["chatroom_msg_level"] == level


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.send_user_message([], TextBody(msg="m")), "to"),
        (lambda c: c.send_user_message(["ok", ""], TextBody(msg="m")), "to[1]"),
        (lambda c: c.send_user_message(["ok", 7], TextBody(msg="m")), "to[1]"),
        (lambda c: c.send_user_message("u", TextBody(msg="m"), sender=""), "sender"),
        (lambda c: c.send_user_message("u", {"msg": "m"}), "body"),
        (lambda c: c.send_user_message("u", TextBody(msg="m"), ext=["x"]), "ext"),
        (lambda c: c.send_user_message("u", TextBody(msg="m"), ext={"x": object()}), "ext"),
        (lambda c: c.send_user_message("u", TextBody(msg="x" * 3001)), "body"),
        (
            lambda c: c.send_user_message("u", TextBody(msg="x" * 2000), ext={"k": "y" * 1000}),
            "body",
        ),
        (
            lambda c: c.send_user_message(
                "u", TextBody(msg="m"), msg_timestamp=datetime(2026, 1, 1)
            ),
            "msg_timestamp",
        ),
        (lambda c: c.send_user_message("u", TextBody(msg="m"), msg_timestamp=-5), "msg_timestamp"),
        (lambda c: c.send_room_message("r", TextBody(msg="m"), level="urgent"), "level"),
    ],
)
async def test_invalid_arguments_raise_before_any_request(client, api, call, field):
    route = api.route().mock(return_value=httpx.Response(500))
    with pytest.raises(ValidationError) as caught:
        await call(client)
    assert caught.value.field == field
    assert route.call_count == 0


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
async def test_a_number_json_cannot_carry_is_refused_before_anything_is_sent(client, api, number):
    route = api.post("/messages/users").mock(side_effect=echo_ids("/messages/users"))
    with pytest.raises(ValidationError, match=r"^ext\['push'\]\['score'\]\[1\]: is (nan|inf|-inf)"):
        await client.send_user_message(
            "u", TextBody(msg="m"), ext={"push": {"score": [1.0, number]}}
        )
    with pytest.raises(ValidationError, match=r"^lat/lng: must be a finite decimal number"):
        LocationBody(lat=number, lng=0, addr="a")
    with pytest.raises(ValidationError, match=r"^lat/lng: must be a finite decimal number"):
        LocationBody(lat=str(number), lng=0, addr="a")
    assert not route.called


async def test_body_plus_ext_of_exactly_3000_bytes_is_allowed(client, api):
    api.post("/messages/users").mock(side_effect=echo_ids("/messages/users"))
    body = TextBody(msg="x" * (3000 - len('{"msg":""}')))
    assert (await client.send_user_message("u", body)).ok


async def test_duplicate_recipients_are_sent_once(client, api):
    route = api.post("/messages/users").mock(side_effect=echo_ids("/messages/users"))
    result = await client.send_user_message(["a", "b", "a", "a"], TextBody(msg="m"))
    assert json_body(route.calls.last.request)["to"] == ["a", "b"]
    assert set(result.message_ids) == {"a", "b"}
    assert result.duplicates == {"a": 2}  # counted, as in a fan-out


@pytest.mark.parametrize(("kind", "cap"), [("users", 600), ("groups", 3), ("rooms", 10)])
async def test_recipients_are_batched_within_the_documented_caps(make_client, api, kind, cap):
    route = api.post(PATHS[kind]).mock(side_effect=echo_ids(PATHS[kind]))
    client = make_client(
        rate_limits=RateLimits(
            users=Rate(10**6, per=60), groups=Rate(10**6, per=1), rooms=Rate(10**6, per=1)
        )
    )
    ids = [str(index) for index in range(cap * 3 + 1)]
    result = await send(client, kind)(ids, TextBody(msg="m"))
    sizes = [len(json_body(call.request)["to"]) for call in route.calls]
    assert sizes == [cap, cap, cap, 1]
    assert set(result.message_ids) == set(ids)
    for call in route.calls:
        assert len(call.request.content) <= 5000


async def test_long_user_ids_are_batched_by_bytes(client, api):
    route = api.post("/messages/users").mock(side_effect=echo_ids("/messages/users"))
    ids = [f"user-{index:012d}" for index in range(600)]
    result = await client.send_user_message(ids, TextBody(msg="m"))
    assert route.call_count > 1
    assert all(len(call.request.content) <= 5000 for call in route.calls)
    assert list(result.message_ids) == ids


async def test_a_rate_below_the_cap_shrinks_the_batches(make_client, api):
    route = api.post("/messages/chatgroups").mock(side_effect=echo_ids("/messages/chatgroups"))
    client = make_client(rate_limits=RateLimits(groups=Rate(2, per=1)))
    await client.send_group_message(["g1", "g2", "g3"], TextBody(msg="m"))
    assert [len(json_body(c.request)["to"]) for c in route.calls] == [2, 1]


async def test_a_batch_is_split_to_use_the_room_left_in_the_window(make_client, api, clock):
    route = api.post("/messages/chatgroups").mock(side_effect=echo_ids("/messages/chatgroups"))
    client = make_client(rate_limits=RateLimits(groups=Rate(5, per=1), margin=0))
    await client.send_group_message(["g1", "g2", "g3"], TextBody(msg="m"))
    start = clock.now()
    result = await client.send_group_message(["g4", "g5", "g6"], TextBody(msg="m"))
    assert result.ok
    # Two units are left in this second: two groups now, the third when the window slides.
    assert [json_body(c.request)["to"] for c in route.calls[1:]] == [["g4", "g5"], ["g6"]]
    assert clock.now() == start + 1.0


async def test_sends_are_paced_by_the_recipient_quota(make_client, api, clock):
    api.post("/messages/chatgroups").mock(side_effect=echo_ids("/messages/chatgroups"))
    client = make_client()
    start = clock.now()
    await client.send_group_message([f"g{i}" for i in range(60)], TextBody(msg="m"))
    # The seventh batch of each second is granted the 2 units left (3+3+3+3+3+3+2), so each
    # second's 20 units fill exactly: the three windows start at 0, 1 and 2 s, each widened
    # by the safety margin.
    assert clock.now() - start == pytest.approx(2 * (1 + DEFAULT_RATE_LIMITS.margin))


# -- per-recipient accounting -------------------------------------------------------------------


async def test_missing_ids_in_a_200_are_unknown_not_delivered(client, api):
    api.post("/messages/users").mock(
        return_value=httpx.Response(200, json=envelope("/messages/users", {"a": "1"}))
    )
    result = await client.send_user_message(["a", "b"], TextBody(msg="m"))
    assert result.message_ids == {"a": "1"}
    assert isinstance(result.unknown["b"], OutcomeUnknownError)
    assert not result.failed


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_ambiguous_server_errors_make_recipients_unknown(client, api, status):
    api.post("/messages/users").mock(return_value=httpx.Response(status, text="oops"))
    result = await client.send_user_message(["a", "b"], TextBody(msg="m"))
    assert set(result.unknown) == {"a", "b"}
    assert isinstance(result.unknown["a"].cause, ServerError)


async def test_a_503_means_not_processed_so_recipients_failed(client, api):
    api.post("/messages/users").mock(return_value=httpx.Response(503))
    result = await client.send_user_message(["a"], TextBody(msg="m"))
    assert isinstance(result.failed["a"], ServerError)
    assert not result.unknown


async def test_a_read_timeout_after_sending_is_unknown(client, api):
    api.post("/messages/users").mock(side_effect=httpx.ReadTimeout("slow"))
    result = await client.send_user_message(["a"], TextBody(msg="m"))
    assert "may or may not have been processed" in str(result.unknown["a"])


async def test_a_refused_connection_is_failed_and_safe_to_retry(client, api):
    api.post("/messages/users").mock(side_effect=httpx.ConnectError("refused"))
    result = await client.send_user_message(["a"], TextBody(msg="m"))
    assert isinstance(result.failed["a"], ConnectError)


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (400, {"error": "illegal_argument", "error_description": "to is empty"}, BadRequestError),
        (429, {"error": "reach_limit", "error_description": "too many requests"}, RateLimitedError),
        (
            403,
            {"error": "forbidden_op", "error_description": "message send reach limit"},
            RateLimitedError,
        ),
    ],
)
async def test_documented_refusals_are_failures_with_their_error(
    client, api, status, payload, error
):
    api.post("/messages/users").mock(return_value=httpx.Response(status, json=payload))
    result = await client.send_user_message(["a"], TextBody(msg="m"))
    assert type(result.failed["a"]) is error
    assert result.failed["a"].description == payload["error_description"]


async def test_a_fatal_error_stops_the_remaining_batches(make_client, api):
    route = api.post("/messages/chatgroups").mock(
        return_value=httpx.Response(401, json={"error": "auth_bad_access_token"})
    )
    client = make_client()
    result = await client.send_group_message([f"g{i}" for i in range(9)], TextBody(msg="m"))
    assert route.call_count == 1
    assert len(result.failed) == 9
    assert all(isinstance(e, AuthenticationError) for e in result.failed.values())


async def test_a_200_without_data_makes_the_batch_unknown(client, api):
    api.post("/messages/users").mock(return_value=httpx.Response(200, json={"action": "post"}))
    result = await client.send_user_message(["a", "b"], TextBody(msg="m"))
    assert set(result.unknown) == {"a", "b"}


async def test_a_200_that_is_not_json_is_unknown(client, api):
    api.post("/messages/users").mock(return_value=httpx.Response(200, text="<html>ok</html>"))
    result = await client.send_user_message(["a"], TextBody(msg="m"))
    assert "not JSON" in str(result.unknown["a"])


async def test_every_recipient_lands_in_exactly_one_bucket(client, api):
    def handler(request: httpx.Request) -> httpx.Response:
        first = json_body(request)["to"][0]
        if first == "g0":
            return httpx.Response(
                200, json=envelope("/messages/chatgroups", {"g0": "1", "g1": "2"})
            )
        if first == "g3":
            return httpx.Response(503)
        return httpx.Response(500)

    api.post("/messages/chatgroups").mock(side_effect=handler)
    ids = [f"g{i}" for i in range(9)]
    result = await client.send_group_message(ids, TextBody(msg="m"))
    buckets = [set(result.message_ids), set(result.failed), set(result.unknown)]
    assert set().union(*buckets) == set(ids)
    assert sum(len(b) for b in buckets) == len(ids)
    assert buckets[0] == {"g0", "g1"}
    assert buckets[1] == {"g3", "g4", "g5"}
    assert buckets[2] == {"g2", "g6", "g7", "g8"}


async def test_a_single_recipient_that_makes_the_request_too_large_is_refused(client, api):
    route = api.post("/messages/users").mock(side_effect=echo_ids("/messages/users"))
    with pytest.raises(ValidationError, match=r"to\[0\].*5000"):
        await client.send_user_message("u" * 2500, TextBody(msg="x" * 2900))
    assert route.call_count == 0


async def test_an_unknown_message_option_is_refused_not_ignored(client, api):
    route = api.post("/messages/users")
    with pytest.raises(ValidationError, match=r"^sendr: is not a message option; the options"):
        await client.send_user_message("u1", TextBody(msg="hi"), sendr="bot")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"^colour: is not a message option"):
        client.fan_out(["u1"], TextBody(msg="hi"), colour="red")  # type: ignore[call-arg]
    assert not route.called
