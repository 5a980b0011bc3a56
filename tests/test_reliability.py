"""Shutdown and cancellation, hostile server answers, and secrets under a full faulty run."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora_chat_async import (
    AgoraAppToken,
    AgoraChatClient,
    AgoraChatError,
    ClientClosedError,
    ClientCredentials,
    Rate,
    RateLimits,
    SendResult,
    StaticToken,
    TextBody,
)
from agora_chat_async.testing import Emulator, EmulatorServer, Faults, MockClock

from .conftest import API, APP, BASE_URL, NO_LIMITS, ORG, TOKEN

TEXT = TextBody(msg="reliability")


def other_tasks() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


# -- cancellation and shutdown --------------------------------------------------------------------


async def test_cancelling_a_fan_out_over_a_socket_leaves_nothing_behind():
    emulator = Emulator(rate_limits=None, faults={"*": Faults(latency=0.02)})
    before = other_tasks()
    with EmulatorServer(emulator) as server:
        client = AgoraChatClient(
            server.url,
            "test-org",
            "test-app",
            auth=StaticToken("test-token"),
            rate_limits=RateLimits(rooms=Rate(200, per=1)),
        )
        with anyio.CancelScope() as scope:
            async with client.fan_out(
                (f"room-{i}" for i in range(10**6)), TEXT, target="rooms", concurrency=8
            ) as results:
                async for _ in results:
                    scope.cancel()  # mid-run: the other workers are sending or waiting
        assert scope.cancelled_caught
        await client.aclose()
        pool = client._pipeline._transport._http._transport._pool
        assert pool.connections == []
    assert other_tasks() <= before, "no task outlives the fan-out"


async def test_closing_the_client_mid_run_fails_the_rest_cleanly():
    emulator = Emulator(clock=MockClock(start=0.0))
    client = emulator.client()
    recipients = [f"g{i}" for i in range(200)]  # ten seconds of group quota
    result = SendResult()
    async with client.fan_out(recipients, TEXT, target="groups") as results:
        async for part in results:
            result = result.merge(part)
            await client.aclose()  # closed after the first batch came back; idempotent
    # Every recipient is accounted for; those after the close failed with ClientClosedError.
    buckets = [set(result.message_ids), set(result.failed), set(result.unknown)]
    assert set().union(*buckets) == set(recipients)
    assert sum(map(len, buckets)) == len(recipients)
    assert result.failed
    assert all(isinstance(e, ClientClosedError) for e in result.failed.values())
    for recipient in result.failed:
        assert not emulator.delivered_to(recipient)
    late = await client.send_group_message("late", TEXT)
    assert isinstance(late.failed["late"], ClientClosedError)
    with pytest.raises(ClientClosedError, match="client is closed"):
        await client.recall_message("1", "a", "chat")


# -- hostile answers ------------------------------------------------------------------------------

BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.just(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    st.just(b'{"data": '),  # truncated JSON
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    ).map(lambda value: __import__("json").dumps(value).encode()),
    st.fixed_dictionaries(
        {
            "data": st.one_of(
                st.none(),
                st.integers(),
                st.lists(st.integers()),
                st.dictionaries(st.text(max_size=5), st.integers() | st.none()),
            )
        }
    ).map(lambda value: __import__("json").dumps(value).encode()),
)
STATUSES = st.sampled_from([200, 200, 200, 400, 401, 403, 404, 413, 429, 500, 502, 503, 504])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=STATUSES, body=BODIES)
def test_any_answer_becomes_a_result_or_an_agora_chat_error(status, body):
    errors: list[AgoraChatError] = []

    async def scenario() -> None:
        with respx.mock(base_url=API, assert_all_called=False) as api:
            api.route().mock(return_value=httpx.Response(status, content=body))
            async with AgoraChatClient(
                BASE_URL,
                ORG,
                APP,
                auth=StaticToken(TOKEN),
                rate_limits=NO_LIMITS,
                clock=MockClock(),
                retry=__import__("agora_chat_async").RetryPolicy(attempts=0, rate_limit_budget=0),
            ) as client:
                result = await client.send_user_message(["a", "b"], TEXT)
                assert set(result.message_ids) | set(result.failed) | set(result.unknown) == {
                    "a",
                    "b",
                }
                for call in (
                    client.recall_message("1", "a", "chat"),
                    client.get_history_file("2024010100"),
                    client.delete_conversation("a", "b", "chat"),
                    client.upload_file(b"data", filename="a.txt"),
                ):
                    try:
                        await call
                    except AgoraChatError as error:  # anything else fails the test
                        errors.append(error)
        for error in errors:
            assert len(str(error)) < 2000
            assert len(getattr(error, "body_excerpt", "") or "") <= 400

    anyio.run(scenario)


async def test_a_huge_error_body_is_read_only_up_to_the_cap(client, api):
    endless = b"x" * (64 * 1024 * 1024)
    api.post("/messages/users").mock(return_value=httpx.Response(502, content=endless))
    result = await client.send_user_message("a", TEXT)
    [error] = result.unknown.values()
    assert len(str(error)) < 2000


# -- secrets --------------------------------------------------------------------------------------


async def test_no_secret_reaches_a_log_record_a_repr_or_an_error(caplog, tmp_path: Path):
    secret = "YXA6-CLIENT-SECRET-do-not-log-0123456789"
    certificate = "5CFd2fd1755d40ecb72977518be15d3b"
    clock = MockClock(start=0.0)
    emulator = Emulator(
        clock=clock,
        clients={"client-id": secret},
        app_id="970CA35de60c44645bbae8a215061b33",
        app_certificate=certificate,
        token_ttl=20,
        seed=7,
        faults={"*": Faults(refuse_503=0.1, process_then_500=0.05, drop_connection=0.05)},
    )
    seen: list[object] = []
    shares: list[str] = []
    signatures: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for auth in (
            ClientCredentials("client-id", secret),
            AgoraAppToken("970CA35de60c44645bbae8a215061b33", certificate),
        ):
            async with emulator.client(auth=auth) as client:
                seen += [auth, client, client.limiter]
                result = await client.send_user_message([f"u{i}" for i in range(3000)], TEXT)
                seen += [result, *result.failed.values(), *result.unknown.values()]
                emulator.revoke_tokens()
                hour = datetime.fromtimestamp(emulator.wall_time(), tz=UTC)
                try:
                    history = await client.get_history_file(hour)
                    seen.append(history)
                    query = dict(parse_qsl(urlsplit(history.url).query))
                    signatures.append(query["Signature"])
                    async with client.iter_history(hour) as records:
                        seen += [record async for record in records]
                except AgoraChatError as error:
                    seen.append(error)
                result = await client.send_room_message([f"r{i}" for i in range(50)], TEXT)
                seen += [result, *result.failed.values(), *result.unknown.values()]
                uploaded = None
                try:
                    uploaded = await client.upload_file(b"secret file", restrict_access=True)
                except AgoraChatError as error:
                    seen.append(error)
                if uploaded is not None:
                    seen.append(uploaded)
                    shares.append(uploaded.share_secret or "")
                    try:
                        await client.download_file(
                            uploaded.uuid, tmp_path / "f.bin", share_secret=uploaded.share_secret
                        )
                    except AgoraChatError as error:
                        seen.append(error)
        async with emulator.client(auth=ClientCredentials("client-id", "wrong-" + secret)) as bad:
            failed = await bad.send_user_message("u1", TEXT)
            seen += [failed, *failed.failed.values()]
    texts = [record.getMessage() for record in caplog.records]
    texts += [repr(obj) for obj in seen] + [str(obj) for obj in seen]
    tokens = list(emulator.presented_tokens)  # every token the run used
    assert tokens
    assert [share for share in shares if share]
    assert signatures
    for text in texts:
        for needle in (secret, certificate, *shares, *signatures, *tokens):
            if needle:
                assert needle not in text
    assert caplog.records, "the run logged something to search"
