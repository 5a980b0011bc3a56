"""The fault matrix: three-way accounting against the emulator's delivery record.

Each case is a seeded fan-out of a few thousand recipients under one kind of fault. For
every case: every reported delivery happened exactly once, every reported failure did not
happen, every unknown is an ambiguous case (the request may have been processed), and
nothing is duplicated unless ``retry_unknown=True`` was asked for.

With ``AGORA_CHAT_FAULT_REPORT=path.md`` the observed accounting of every case is written
there as a table (the figures of the reliability issue's closing note).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio

from agora_chat_async import (
    AgoraChatClient,
    AuthenticationError,
    ClientCredentials,
    OutcomeUnknownError,
    Rate,
    RateLimits,
    RedisLimiter,
    RetryPolicy,
    SendResult,
    StaticToken,
    TextBody,
)
from agora_chat_async.testing import Emulator, EmulatorServer, Faults, MockClock

from .conftest import NO_LIMITS

TEXT = TextBody(msg="accounting")
REPORT: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def fault_report() -> Iterator[None]:
    yield
    path = os.environ.get("AGORA_CHAT_FAULT_REPORT")
    if path and REPORT:
        columns = ["fault", "recipients", "delivered", "failed", "unknown", "duplicates"]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in REPORT]
        Path(path).write_text("\n".join(lines) + "\n")


def check(
    fault: str,
    result: SendResult,
    emulator: Emulator,
    recipients: list[str],
    *,
    retry_unknown: bool = False,
) -> None:
    """The three-way accounting holds against what the emulator recorded."""
    buckets = [set(result.message_ids), set(result.failed), set(result.unknown)]
    assert set().union(*buckets) == set(recipients), "every recipient is accounted for"
    assert sum(map(len, buckets)) == len(recipients), "in exactly one bucket"
    for recipient, message_id in result.message_ids.items():
        deliveries = emulator.delivered_to(recipient)
        assert message_id in {d.message_id for d in deliveries}
        if not retry_unknown:
            assert len(deliveries) == 1, f"{recipient} delivered {len(deliveries)} times"
    for recipient in result.failed:
        assert not emulator.delivered_to(recipient), "a reported failure did not happen"
    if not retry_unknown:
        assert emulator.duplicates == 0
    REPORT.append(
        {
            "fault": fault,
            "recipients": len(recipients),
            "delivered": len(result.message_ids),
            "failed": len(result.failed),
            "unknown": len(result.unknown),
            "duplicates": emulator.duplicates,
        }
    )


def rooms(count: int) -> list[str]:
    return [f"room-{index:06d}" for index in range(count)]


@pytest.mark.parametrize(
    ("faults", "unknown_expected"),
    [
        (Faults(refuse_503=0.2), False),
        (Faults(process_then_500=0.05), True),
        (Faults(drop_connection=0.05), True),
        (Faults(refuse_503=0.2, process_then_500=0.05, drop_connection=0.05), True),
    ],
    ids=["503 on 20%", "processed then 500 on 5%", "dropped on 5%", "all at once"],
)
async def test_fan_out_under_faults(request, faults, unknown_expected):
    emulator = Emulator(clock=MockClock(start=0.0), seed=11, faults={"*": faults})
    recipients = rooms(3000)  # 300 requests
    async with emulator.client() as client:
        result = await client.send_room_message(recipients, TEXT)
    check(request.node.callspec.id, result, emulator, recipients)
    ambiguous = emulator.faults_injected["process_then_500"]
    ambiguous += emulator.faults_injected["drop_connection"]
    # Exactly the recipients of the ambiguous requests (10 rooms each) are unknown.
    assert len(result.unknown) == 10 * ambiguous
    if unknown_expected:
        assert result.unknown, "the ambiguous cases are reported unknown"
        # Unknown recipients were in fact delivered (processed, answer lost): not resent.
        assert all(len(emulator.delivered_to(r)) == 1 for r in result.unknown)
    else:
        assert result.ok, "503s are retried until delivered"


async def test_retry_unknown_resends_what_may_have_been_processed():
    emulator = Emulator(
        clock=MockClock(start=0.0), seed=5, faults={"*": Faults(process_then_500=0.05)}
    )
    recipients = rooms(3000)
    async with emulator.client() as client:
        result = await client.send_room_message(recipients, TEXT, retry_unknown=True)
    check(
        "processed then 500 on 5%, retry_unknown=True",
        result,
        emulator,
        recipients,
        retry_unknown=True,
    )
    assert result.ok
    assert emulator.duplicates > 0, "the price of retry_unknown: some recipients got it twice"


async def test_read_timeouts_from_added_latency_are_unknown_never_resent():
    emulator = Emulator(
        seed=3, rate_limits=None, faults={"*": Faults(latency=0.0, latency_jitter=0.3)}
    )
    recipients = rooms(600)  # 60 requests, about a third slower than the read timeout
    with EmulatorServer(emulator) as server:  # a read timeout needs a socket
        async with AgoraChatClient(
            server.url,
            "test-org",
            "test-app",
            auth=StaticToken("test-token"),
            rate_limits=NO_LIMITS,
            timeout=httpx.Timeout(5.0, read=0.2),
        ) as client:
            async with client.fan_out(recipients, TEXT, target="rooms", concurrency=16) as results:
                result = SendResult()
                async for part in results:
                    result = result.merge(part)
    check("read timeouts (latency 0-0.3 s, read timeout 0.2 s)", result, emulator, recipients)
    assert result.unknown, "timed-out requests are unknown"
    assert all(isinstance(e, OutcomeUnknownError) for e in result.unknown.values())
    assert all(len(emulator.delivered_to(r)) == 1 for r in result.unknown)


async def test_a_storm_of_429s_loses_nothing():
    # The server allows half of what the client is configured for, and says so with 429s
    # carrying Retry-After.
    emulator = Emulator(
        clock=MockClock(start=0.0), rate_limits=RateLimits(rooms=Rate(50, per=1)), retry_after=1
    )
    recipients = rooms(3000)
    async with emulator.client() as client:
        result = await client.send_room_message(recipients, TEXT)
    check("429 storm (server allows half)", result, emulator, recipients)
    assert result.ok
    refusals = emulator.refused["limit:rooms"]
    assert 0 < refusals < 0.05 * sum(emulator.requests.values())


async def test_a_server_enforcing_less_loses_nothing():
    emulator = Emulator(clock=MockClock(start=0.0), rate_limits=RateLimits(groups=Rate(14, per=1)))
    recipients = [f"g{index}" for index in range(300)]
    async with emulator.client() as client:
        result = await client.send_group_message(recipients, TEXT)
    check("server enforcing 30% less (groups)", result, emulator, recipients)
    assert result.ok
    refusals = emulator.refused["limit:groups"]
    assert refusals < 0.05 * sum(emulator.requests.values())


async def test_tokens_expiring_and_revoked_mid_run():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock, clients={"id": "secret"}, token_ttl=30)
    recipients = [f"user-{index:06d}" for index in range(18000)]  # three windows of quota
    revoked = False

    def revoke_once(result: SendResult) -> None:
        nonlocal revoked
        if not revoked and clock.now() > 30:  # in the second window
            emulator.revoke_tokens()
            revoked = True

    async with emulator.client(auth=ClientCredentials("id", "secret")) as client:
        async with client.fan_out(recipients, TEXT, progress=revoke_once) as results:
            result = SendResult()
            async for part in results:
                result = result.merge(part)
    check("token expiring (ttl 30 s) and revoked mid-run", result, emulator, recipients)
    assert revoked
    assert result.ok
    # A renewal before each expiry and one after the revocation: a handful, not a loop.
    assert emulator.requests["token"] <= 8


async def test_wrong_credentials_fail_fast_with_one_token_request():
    emulator = Emulator(clock=MockClock(start=0.0), clients={"id": "secret"})
    recipients = rooms(3000)
    async with emulator.client(auth=ClientCredentials("id", "wrong")) as client:
        result = await client.send_room_message(recipients, TEXT)
    check("wrong client secret", result, emulator, recipients)
    assert set(result.failed) == set(recipients)
    assert all(isinstance(e, AuthenticationError) for e in result.failed.values())
    assert emulator.requests["token"] == 1
    assert emulator.requests.get("rooms", 0) == 0


async def test_the_redis_server_killed_and_restarted_mid_run(redis_server):
    # Real time: the Redis limiter reads Redis's clock. 100 rooms per 0.25 s on both sides,
    # with a margin wide enough for a loaded CI machine's scheduling jitter.
    quota = RateLimits(rooms=Rate(100, per=0.25), margin=0.1)
    emulator = Emulator(rate_limits=quota)
    store = redis.asyncio.from_url(redis_server.url)
    limiter = RedisLimiter(store, rate_limits=quota, unavailable_timeout=10)
    recipients = rooms(2000)
    started = anyio.current_time()
    restarted = False

    def restart_once(result: SendResult) -> None:
        nonlocal restarted
        if not restarted and anyio.current_time() - started > 1.5:
            redis_server.restart()
            restarted = True

    async with emulator.client(
        limiter=limiter, retry=RetryPolicy(attempts=0, rate_limit_budget=0)
    ) as client:
        async with client.fan_out(
            recipients, TEXT, target="rooms", progress=restart_once
        ) as results:
            result = SendResult()
            async for part in results:
                result = result.merge(part)
    await store.aclose()
    check("Redis limiter's server killed and restarted", result, emulator, recipients)
    assert restarted
    assert result.ok, "no refusal: no burst above the limit after the restart"
    assert not emulator.refused
