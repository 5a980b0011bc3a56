"""The pipeline: error mapping, capped reads, retry-after, logging, client lifecycle."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from agora_chat_async import (
    AgoraChatClient,
    ConnectError,
    RateLimitedError,
    ServerError,
    StaticToken,
    TextBody,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
)
from agora_chat_async._responses import MAX_ERROR_BYTES, MAX_JSON_BYTES
from agora_chat_async._responses import parse_retry_after as _parse_retry_after

from .conftest import API, APP, BASE_URL, ORG, TOKEN, envelope


async def test_requests_go_to_the_org_and_app_with_a_user_agent(client, api):
    route = api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(200, json={"data": [{"url": "https://x/y"}]})
    )
    await client.get_history_file("2018112717")
    request = route.calls.last.request
    assert str(request.url) == f"{API}/chatmessages/2018112717"
    assert request.headers["User-Agent"].startswith("agora-chat-async/")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("soon", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(value, expected):
    now = 1445412470.0  # ten seconds before that date
    assert _parse_retry_after(value, now) == expected


async def test_429_carries_retry_after(client, api):
    api.get("/chatfiles/x").mock(
        return_value=httpx.Response(
            429, headers={"Retry-After": "3"}, json={"error": "reach_limit"}
        )
    )
    with pytest.raises(RateLimitedError) as caught:
        await client.download_file("x", __import__("io").BytesIO())
    assert caught.value.retry_after == 3.0


async def test_a_proxy_error_page_gives_status_and_excerpt(client, api):
    api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>")
    )
    with pytest.raises(ServerError) as caught:
        await client.get_history_file("2018112717")
    assert caught.value.status_code == 502
    assert "502 Bad Gateway" in caught.value.body_excerpt
    assert len(caught.value.body_excerpt) < 400


async def test_huge_error_bodies_are_read_only_up_to_the_cap(make_client, api):
    from agora_chat_async import RetryPolicy

    client = make_client(retry=RetryPolicy(attempts=0, rate_limit_budget=0))
    read = 0

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self):
            nonlocal read
            while True:
                read += 65536
                yield b"x" * 65536

    api.get("/chatmessages/2018112717").mock(return_value=httpx.Response(500, stream=Endless()))
    with pytest.raises(ServerError):
        await client.get_history_file("2018112717")
    assert read <= MAX_ERROR_BYTES + 65536


async def test_huge_success_bodies_are_refused(client, api):
    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self):
            while True:
                yield b" " * 1024 * 1024

    api.get("/chatmessages/2018112717").mock(return_value=httpx.Response(200, stream=Endless()))
    with pytest.raises(UnexpectedResponseError, match=str(MAX_JSON_BYTES)):
        await client.get_history_file("2018112717")


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe", b'{"truncated": '])
async def test_non_object_json_on_a_read_is_an_unexpected_response(client, api, content):
    api.get("/chatmessages/2018112717").mock(return_value=httpx.Response(200, content=content))
    with pytest.raises(UnexpectedResponseError):
        await client.get_history_file("2018112717")


async def test_transport_failures_on_reads_are_transport_errors(client, api):
    api.get("/chatmessages/2018112717").mock(side_effect=httpx.RemoteProtocolError("dropped"))
    with pytest.raises(TransportError, match="RemoteProtocolError"):
        await client.get_history_file("2018112717")
    api.get("/chatmessages/2018112717").mock(side_effect=httpx.ConnectTimeout("no route"))
    with pytest.raises(ConnectError, match="nothing was sent"):
        await client.get_history_file("2018112717")


async def test_logs_never_contain_the_token_or_signed_queries(client, api, caplog):
    api.post("/messages/users").mock(
        return_value=httpx.Response(200, json=envelope("/messages/users", {"u": "1"}))
    )
    api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(200, json={"data": [{"url": "https://oss/x?Signature=SIG"}]})
    )
    api.get("https://oss/x").mock(return_value=httpx.Response(200, content=b""))
    with caplog.at_level(logging.DEBUG):
        await client.send_user_message("u", TextBody(msg="hi"))
        async for _ in client.iter_history("2018112717"):
            pass
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST" in text
    assert TOKEN not in text
    assert "SIG" not in text


async def test_own_http_client_is_closed_callers_is_not(api):
    mine = httpx.AsyncClient()
    async with AgoraChatClient(
        BASE_URL, ORG, APP, auth=StaticToken(TOKEN), http_client=mine
    ) as client:
        api.get("/chatmessages/2018112717").mock(
            return_value=httpx.Response(200, json={"data": [{"url": "https://x"}]})
        )
        await client.get_history_file("2018112717")
    assert not mine.is_closed
    await mine.aclose()
    owned = AgoraChatClient(BASE_URL, ORG, APP, auth=StaticToken(TOKEN))
    await owned.aclose()
    await owned.aclose()  # idempotent
    assert owned._pipeline._transport._http.is_closed


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("a1.easemob.com", ORG, APP), {}, "base_url"),
        (("ftp://a1.easemob.com", ORG, APP), {}, "base_url"),
        ((BASE_URL, "", APP), {}, "org_name"),
        ((BASE_URL, ORG, "a/b"), {}, "app_name"),
        ((BASE_URL, ORG, APP), {"auth": "token"}, "auth"),
    ],
)
def test_client_arguments_are_checked_at_construction(args, kwargs, field):
    kwargs.setdefault("auth", StaticToken(TOKEN))
    with pytest.raises(ValidationError) as caught:
        AgoraChatClient(*args, **kwargs)
    assert caught.value.field == field


def test_rate_limits_and_limiter_are_exclusive():
    from agora_chat_async import RateLimits, SlidingWindowLimiter

    with pytest.raises(ValidationError, match="not both"):
        AgoraChatClient(
            BASE_URL,
            ORG,
            APP,
            auth=StaticToken(TOKEN),
            rate_limits=RateLimits(),
            limiter=SlidingWindowLimiter(),
        )


def test_client_repr_hides_the_token():
    client = AgoraChatClient(BASE_URL, ORG, APP, auth=StaticToken(TOKEN))
    assert TOKEN not in repr(client)
    assert "SlidingWindowLimiter" in repr(client)


@pytest.mark.parametrize(
    ("claims", "binding", "expected"),
    [
        ((("users", 380), ("send_calls", 1)), "users", (("users", 380),)),
        ((("users", 380), ("send_calls", 1)), "send_calls", (("send_calls", 1),)),
        ((("other", 1),), "other", (("other", 1),)),
        ((("groups", 3),), None, (("groups", 3),)),
    ],
)
def test_a_refusal_is_blamed_on_the_binding_claim(claims, binding, expected):
    from agora_chat_async._pipeline import _exceeded

    assert _exceeded(claims, binding) == expected


@pytest.mark.parametrize("status", [429, 403])
@pytest.mark.parametrize(
    ("single_sends", "fan_out_users", "blamed"),
    [
        (0, 600, "users"),  # a full recipient window: the quota binds, whatever the status
        (90, 1, "send_calls"),  # 90 calls of 100 in the second: the call rate binds
    ],
)
async def test_either_status_adapts_the_limit_the_request_pressed_on(
    make_client, api, status, single_sends, fan_out_users, blamed
):
    from agora_chat_async import Rate, RateLimited, RateLimits

    body = {"error": "reach_limit", "error_description": "reach limit"}
    if status == 403:
        body = {"error": "forbidden_op", "error_description": "message send reach limit"}
    full_batches = 9 if fan_out_users == 600 else 0
    ok = httpx.Response(200, json=envelope("/m", {"u": "1"}))
    api.post("/messages/users").mock(
        side_effect=[
            *[ok] * (single_sends + full_batches),
            httpx.Response(status, json=body),
            *[ok] * 3,
        ]
    )
    events: list[Any] = []
    client = make_client(
        rate_limits=RateLimits(users=Rate(6000, per=60), margin=0), on_event=events.append
    )
    for _ in range(single_sends):
        await client.send_user_message("u", TextBody(msg="m"))
    for _ in range(full_batches):
        await client.send_user_message([f"u{i}" for i in range(600)], TextBody(msg="m"))
    await client.send_user_message([f"v{i}" for i in range(fan_out_users)], TextBody(msg="m"))
    refused = [event for event in events if isinstance(event, RateLimited)]
    assert [event.limits for event in refused] == [(blamed,)]


async def test_a_refused_request_is_refunded_and_its_limit_adapts(make_client, api, clock):
    from agora_chat_async import RateLimits

    api.post("/messages/chatgroups").mock(
        side_effect=[
            httpx.Response(200, json=envelope("/m", {"g0": "1", "g1": "2", "g2": "3"})),
            httpx.Response(
                403, json={"error": "forbidden_op", "error_description": "message send reach limit"}
            ),
            httpx.Response(200, json=envelope("/m", {"g3": "4", "g4": "5", "g5": "6"})),
        ]
    )
    client = make_client(rate_limits=RateLimits(margin=0))
    result = await client.send_group_message([f"g{i}" for i in range(6)], TextBody(msg="m"))
    assert result.ok
    # Refused with only 3 of 20 units used (the refused 3 were refunded): too early in the
    # window to trust as an estimate, so the limit is cut by 30%.
    assert await client.limiter.effective_limit("groups") == 14


async def test_reads_retry_every_transient_failure(client, api):
    route = api.get("/chatmessages/2018112717").mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("dropped"),
            httpx.Response(500),
            httpx.Response(200, json={"data": [{"url": "https://x/y"}]}),
        ]
    )
    assert (await client.get_history_file("2018112717")).url == "https://x/y"
    assert route.call_count == 4


async def test_a_permit_taken_for_a_request_that_never_left_is_refunded(make_client, api, clock):
    from agora_chat_async import Auth, AuthenticationError, Rate, RateLimits

    class Refused(Auth):
        async def get_token(self, session: object) -> str:
            raise AuthenticationError(status_code=401, description="no", method="POST", path="/")

    route = api.post("/messages/users").mock(
        return_value=httpx.Response(200, json=envelope("/messages/users", {"a": "1"}))
    )
    limits = RateLimits(users=Rate(1, per=60), margin=0)
    client = make_client(auth=Refused(), rate_limits=limits)
    result = await client.send_user_message("a", TextBody(msg="m"))
    assert isinstance(result.failed["a"], AuthenticationError)
    assert not route.called
    # The unit went back: a second client-side claim starts at once.
    await client.limiter.acquire([("users", 1)])
    assert clock.sleeps == []


@pytest.mark.parametrize("size", [1, 1500])
async def test_a_hook_that_raises_changes_nothing_but_a_log_line(caplog, size):
    """A hook's exception was raised from the middle of a request: the response was never
    closed, its permit never settled, and a delivered message was reported failed."""
    from agora_chat_async import TextBody
    from agora_chat_async.testing import Emulator

    def broken(event: object) -> None:
        raise RuntimeError("the metrics backend is down")

    emulator = Emulator()
    ids = [f"user-{index}" for index in range(size)]
    with caplog.at_level(logging.ERROR, logger="agora_chat_async"):
        async with emulator.client(on_event=broken) as client:
            result = await client.send_user_message(ids, TextBody(msg="hi"))
            assert result.ok
            assert len(result.message_ids) == size
            # The permits were settled: the next send fits as if nothing had happened.
            assert (await client.send_user_message("late", TextBody(msg="hi"))).ok
    assert "the on_event hook raised" in caplog.text
    assert "the metrics backend is down" in caplog.text
    assert len(emulator.deliveries) == size + 1
