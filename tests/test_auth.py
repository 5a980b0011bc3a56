"""The three providers: static, client credentials (cache, refresh, single flight), app token."""

from __future__ import annotations

import anyio
import httpx
import pytest
import respx

from agora_chat_async import (
    AgoraAppToken,
    AuthenticationError,
    ClientCredentials,
    StaticToken,
    TextBody,
    ValidationError,
)

from .conftest import TOKEN, VirtualClock, envelope, json_body

APP_ID = "970CA35de60c44645bbae8a215061b33"
CERTIFICATE = "5CFd2fd1755d40ecb72977518be15d3b"
CLIENT_SECRET = "YXA6SECRET-CLIENT-SECRET-VALUE"


def token_route(api: respx.MockRouter, *tokens: str, expires_in: int = 5184000) -> respx.Route:
    responses = [
        httpx.Response(
            200,
            json={"access_token": token, "expires_in": expires_in, "application": "c3624975-XXXX"},
        )
        for token in tokens
    ]
    return api.post("/token").mock(side_effect=responses)


def send_route(api: respx.MockRouter) -> respx.Route:
    return api.post("/messages/users").mock(
        return_value=httpx.Response(200, json=envelope("/messages/users", {"u": "1"}))
    )


def test_reprs_hide_every_secret():
    for provider, secret in (
        (StaticToken(TOKEN), TOKEN),
        (ClientCredentials("YXA6client", CLIENT_SECRET), CLIENT_SECRET),
        (AgoraAppToken(APP_ID, CERTIFICATE), CERTIFICATE),
    ):
        assert secret not in repr(provider)


@pytest.mark.parametrize("bad", ["", None, 5])
def test_empty_credentials_are_refused(bad):
    with pytest.raises(ValidationError):
        StaticToken(bad)
    with pytest.raises(ValidationError):
        ClientCredentials("id", bad)


def test_app_token_refuses_a_malformed_certificate_at_construction():
    with pytest.raises(ValidationError, match="app_certificate"):
        AgoraAppToken(APP_ID, "not-a-certificate")
    with pytest.raises(ValidationError, match="ttl"):
        AgoraAppToken(APP_ID, CERTIFICATE, ttl=0)


async def test_static_token_is_sent_as_bearer(client, api):
    route = send_route(api)
    await client.send_user_message("u", TextBody(msg="hi"))
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_static_token_401_is_raised_without_retry(client, api):
    route = api.post("/messages/users").mock(
        return_value=httpx.Response(
            401, json={"error": "auth_bad_access_token", "error_description": "bad token"}
        )
    )
    result = await client.send_user_message("u", TextBody(msg="hi"))
    assert route.call_count == 1
    assert isinstance(result.failed["u"], AuthenticationError)


async def test_client_credentials_request_matches_the_token_endpoint(make_client, api):
    tokens = token_route(api, "YWMt-first")
    send_route(api)
    client = make_client(ClientCredentials("YXA6client", CLIENT_SECRET, ttl=3600))
    await client.send_user_message("u", TextBody(msg="hi"))
    request = tokens.calls.last.request
    assert "Authorization" not in request.headers
    assert json_body(request) == {
        "grant_type": "client_credentials",
        "client_id": "YXA6client",
        "client_secret": CLIENT_SECRET,
        "ttl": 3600,
    }


async def test_one_hundred_cold_callers_make_one_token_request(make_client, api):
    tokens = token_route(api, "YWMt-only")
    sends = send_route(api)
    client = make_client(ClientCredentials("YXA6client", CLIENT_SECRET))
    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(client.send_user_message, "u", TextBody(msg="hi"))
    assert tokens.call_count == 1
    assert sends.call_count == 100
    assert {c.request.headers["Authorization"] for c in sends.calls} == {"Bearer YWMt-only"}


async def test_token_is_renewed_before_it_expires(make_client, api, clock: VirtualClock):
    tokens = token_route(api, "YWMt-one", "YWMt-two", expires_in=1000)
    sends = send_route(api)
    client = make_client(ClientCredentials("YXA6client", CLIENT_SECRET))
    await client.send_user_message("u", TextBody(msg="hi"))
    clock.advance(899)  # renewal is due at 1000 - 10% = 900 s
    await client.send_user_message("u", TextBody(msg="hi"))
    assert tokens.call_count == 1
    clock.advance(1)
    await client.send_user_message("u", TextBody(msg="hi"))
    assert tokens.call_count == 2
    assert sends.calls.last.request.headers["Authorization"] == "Bearer YWMt-two"


async def test_a_401_refreshes_once_and_retries_once(make_client, api):
    tokens = token_route(api, "YWMt-revoked", "YWMt-fresh")
    sends = api.post("/messages/users").mock(
        side_effect=[
            httpx.Response(401, json={"error": "auth_bad_access_token"}),
            httpx.Response(200, json=envelope("/messages/users", {"u": "42"})),
        ]
    )
    client = make_client(ClientCredentials("YXA6client", CLIENT_SECRET))
    result = await client.send_user_message("u", TextBody(msg="hi"))
    assert result.message_ids == {"u": "42"}
    assert tokens.call_count == 2
    assert [c.request.headers["Authorization"] for c in sends.calls] == [
        "Bearer YWMt-revoked",
        "Bearer YWMt-fresh",
    ]


async def test_a_second_401_is_final_never_a_loop(make_client, api):
    tokens = token_route(api, "YWMt-1", "YWMt-2", "YWMt-3")
    sends = api.post("/messages/users").mock(
        return_value=httpx.Response(401, json={"error": "auth_bad_access_token"})
    )
    client = make_client(ClientCredentials("YXA6client", CLIENT_SECRET))
    result = await client.send_user_message("u", TextBody(msg="hi"))
    assert isinstance(result.failed["u"], AuthenticationError)
    assert sends.call_count == 2
    assert tokens.call_count == 2


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_wrong_credentials_fail_fast_with_one_token_request(make_client, api, status):
    tokens = api.post("/token").mock(
        return_value=httpx.Response(
            status, json={"error": "invalid_grant", "error_description": "client_id not found"}
        )
    )
    sends = send_route(api)
    client = make_client(ClientCredentials("YXA6client", CLIENT_SECRET))
    result = await client.send_user_message(["a", "b"], TextBody(msg="hi"))
    assert tokens.call_count == 1
    assert sends.call_count == 0
    error = result.failed["a"]
    assert isinstance(error, AuthenticationError)
    assert error.status_code == status
    assert CLIENT_SECRET not in str(error)


async def test_malformed_token_response_is_an_unexpected_response(make_client, api):
    api.post("/token").mock(return_value=httpx.Response(200, json={"token": "x"}))
    client = make_client(ClientCredentials("YXA6client", CLIENT_SECRET))
    from agora_chat_async import UnexpectedResponseError

    with pytest.raises(UnexpectedResponseError, match="access_token"):
        await client.get_history_file("2018112717")


async def test_app_token_is_built_locally_and_renewed(make_client, api, clock: VirtualClock):
    sends = send_route(api)
    client = make_client(AgoraAppToken(APP_ID, CERTIFICATE, ttl=1000))
    await client.send_user_message("u", TextBody(msg="hi"))
    await client.send_user_message("u", TextBody(msg="hi"))
    first, second = (c.request.headers["Authorization"] for c in sends.calls)
    assert first == second
    assert first.startswith("Bearer 007")
    clock.advance(900)
    await client.send_user_message("u", TextBody(msg="hi"))
    assert sends.calls.last.request.headers["Authorization"] != first


async def test_app_token_is_rebuilt_after_a_401(make_client, api):
    sends = api.post("/messages/users").mock(
        side_effect=[
            httpx.Response(401, json={"error": "auth_bad_access_token"}),
            httpx.Response(200, json=envelope("/messages/users", {"u": "7"})),
        ]
    )
    client = make_client(AgoraAppToken(APP_ID, CERTIFICATE))
    result = await client.send_user_message("u", TextBody(msg="hi"))
    assert result.message_ids == {"u": "7"}
    first, second = (c.request.headers["Authorization"] for c in sends.calls)
    assert first != second
