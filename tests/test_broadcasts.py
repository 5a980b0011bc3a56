"""Broadcasts: reserved under their quotas before they are sent, sent at most once, and each
documented refusal mapped (``_broadcasts.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from agora_chat_async import (
    BroadcastLimits,
    CmdBody,
    ConnectError,
    DailyLimit,
    FeatureNotEnabledError,
    LimitReachedError,
    OutcomeUnknownError,
    QuotaExhaustedError,
    Rate,
    RateLimitedError,
    RateLimits,
    RetryPolicy,
    ServerError,
    TextBody,
    ValidationError,
)
from agora_chat_async.testing import Emulator, MockClock

from .conftest import envelope

TEN_AM = datetime(2026, 12, 7, 10, tzinfo=UTC).timestamp()
HI = TextBody(msg="hi")
ANSWER = envelope("/messages/broadcast", {"id": 1365344904091349007})


def limits(**broadcasts) -> RateLimits:
    return RateLimits(broadcasts=BroadcastLimits(**broadcasts))


@pytest.fixture
def clock() -> MockClock:
    return MockClock(start=TEN_AM)


async def test_a_second_broadcast_within_the_half_hour_fails_at_once(make_client, api):
    api.post("/messages/broadcast").mock(return_value=httpx.Response(200, json=ANSWER))
    client = make_client(rate_limits=limits())
    await client.broadcast("users", HI)
    with pytest.raises(LimitReachedError) as refused:
        await client.broadcast("users", HI)
    # Half an hour and BroadcastLimits.margin (a second) after the first (the client's
    # days are Unix time's, moving as its clock moves: this one stands still).
    wait = (refused.value.available_at - datetime.now(UTC)).total_seconds()
    assert 1801 - 5 < wait <= 1801
    assert api.calls.call_count == 1


async def test_the_daily_refusal_marks_the_day_spent(make_client, api, clock):
    refusal = {"error": "forbidden_op", "error_description": "broadcast message limit exceeded"}
    api.post("/messages/broadcast").mock(return_value=httpx.Response(403, json=refusal))
    client = make_client(rate_limits=limits(users=(DailyLimit(3),)))
    with pytest.raises(QuotaExhaustedError, match="The day's broadcasts of this kind are used up"):
        await client.broadcast("users", HI)
    assert api.calls.call_count == 1  # not retried
    with pytest.raises(LimitReachedError) as refused:  # the rest of the day is spent
        await client.broadcast("users", HI)
    midnight = refused.value.available_at
    assert (midnight.hour, midnight.minute, midnight.second) == (0, 0, 0)
    assert 0 < (midnight - datetime.now(UTC)).total_seconds() <= 86_400


async def test_a_rate_refusal_is_raised_at_once_and_keeps_the_reservation(make_client, api):
    refusal = {"error": "reach_limit", "error_description": "This request has reached api limit"}
    api.post("/messages/users/broadcast").mock(return_value=httpx.Response(429, json=refusal))
    client = make_client(rate_limits=limits(online_users=(DailyLimit(50),)))
    with pytest.raises(RateLimitedError):
        await client.broadcast("online_users", HI)
    assert api.calls.call_count == 1
    assert await client.limiter.call_quotas.spent("online_users") == (1, 1)


async def test_an_unknown_outcome_is_not_retried_and_keeps_the_reservation(make_client, api):
    api.post("/messages/chatrooms/broadcast").mock(side_effect=httpx.ReadTimeout("slow"))
    client = make_client(rate_limits=limits())
    with pytest.raises(OutcomeUnknownError):
        await client.broadcast("rooms", HI)
    assert api.calls.call_count == 1
    assert await client.limiter.call_quotas.spent("rooms") == (1, 1)


async def test_a_broadcast_never_sent_gives_its_reservation_back(make_client, api):
    api.post("/messages/broadcast").mock(side_effect=httpx.ConnectError("refused"))
    client = make_client(rate_limits=limits(), retry=RetryPolicy(attempts=2))
    with pytest.raises(ConnectError):
        await client.broadcast("users", HI)
    assert api.calls.call_count == 3  # certainly never sent: retried
    assert await client.limiter.call_quotas.spent("users") == (0, 0)


async def test_a_503_gives_its_reservation_back(make_client, api):
    api.post("/messages/broadcast").mock(return_value=httpx.Response(503, json={}))
    client = make_client(rate_limits=limits(), retry=RetryPolicy(attempts=0))
    with pytest.raises(ServerError):
        await client.broadcast("users", HI)
    assert await client.limiter.call_quotas.spent("users") == (0, 0)


async def test_an_app_without_broadcasts_is_told_what_to_do(make_client, api):
    refusal = {
        "error": "forbidden_op",
        "error_description": "message broadcast service is unopened",
    }
    api.post("/messages/broadcast").mock(return_value=httpx.Response(403, json=refusal))
    client = make_client(rate_limits=limits())
    with pytest.raises(FeatureNotEnabledError, match="Ask the service's sales team"):
        await client.broadcast("users", HI)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("everyone", HI), {}, "to"),
        (("users", HI), {"level": "high"}, "level"),
        (("rooms", HI), {"level": "urgent"}, "level"),
        (("users", HI), {"sender": ""}, "sender"),
        (("users", HI), {"ext": [1]}, "ext"),
        (("users", "hi"), {}, "body"),
        (("users", TextBody(msg="x" * 3001)), {}, "body"),
    ],
)
async def test_broadcast_arguments_are_checked_before_anything_is_reserved(
    client, args, kwargs, field
):
    with pytest.raises(ValidationError) as caught:
        await client.broadcast(*args, **kwargs)
    assert caught.value.field == field
    assert await client.limiter.call_quotas.spent("users") == (0, 0)


async def test_the_emulator_counts_broadcasts_as_the_pages_say(clock):
    """The emulator's own quotas (its clock, UTC days): 429 within the minute, 403 for the
    day; the client, told of larger limits, meets both."""
    emulator = Emulator(clock=clock)
    loose = limits(online_users=(Rate(100, per=60), DailyLimit(100)))
    async with emulator.client(rate_limits=loose) as client:
        await client.broadcast("online_users", HI)
        with pytest.raises(RateLimitedError):
            await client.broadcast("online_users", HI)
        for _ in range(49):
            clock.advance(61)
            await client.broadcast("online_users", HI)
        clock.advance(61)
        with pytest.raises(QuotaExhaustedError, match="online user broadcast limit exceeded"):
            await client.broadcast("online_users", HI)
    assert len(emulator.broadcasts) == 50


async def test_the_emulator_records_whom_a_broadcast_reached(clock):
    emulator = Emulator(clock=clock, online_users={"carol"})
    async with emulator.client() as client:
        await client.send_user_message(["alice", "bob"], HI)
        await client.send_room_message("r1", HI)
        await client.broadcast("users", CmdBody(action="refresh"), sender="bot", ext={"k": 1})
        await client.broadcast("online_users", HI)
        await client.broadcast("rooms", HI, level="high")
    users, online, rooms = emulator.broadcasts
    assert users.reached == ("alice", "bob", "carol")
    assert (users.type, users.msg, users.sender, users.ext) == (
        "cmd",
        {"action": "refresh"},
        "bot",
        {"k": 1},
    )
    assert online.reached == ("carol",)
    assert (rooms.reached, rooms.level) == (("r1",), "high")


async def test_the_emulator_refuses_an_app_without_broadcasts(clock):
    emulator = Emulator(clock=clock, features=("rewrite", "roaming"))
    async with emulator.client() as client:
        with pytest.raises(FeatureNotEnabledError):
            await client.broadcast("users", HI)
    assert not emulator.broadcasts
