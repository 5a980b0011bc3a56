"""Retries: only what was certainly not processed, with backoff read from the client's clock."""

from __future__ import annotations

import random

import httpx
import pytest

from agora_chat_async import (
    BadRequestError,
    QuotaExhaustedError,
    Rate,
    RateLimitedError,
    RateLimits,
    RetryPolicy,
    ServerError,
    TextBody,
    ValidationError,
)

from .conftest import VirtualClock, envelope

OK = httpx.Response(200, json=envelope("/messages/users", {"u": "1"}))


def sequence(*responses):
    answers = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(503),
        httpx.Response(429, json={"error": "reach_limit"}),
        httpx.Response(
            403, json={"error": "forbidden_op", "error_description": "message send reach limit"}
        ),
        httpx.ConnectError("refused"),
    ],
    ids=["503", "429 reach_limit", "403 reach limit", "connection refused"],
)
async def test_not_processed_is_retried_and_delivered(client, api, clock: VirtualClock, refusal):
    route = api.post("/messages/users").mock(side_effect=sequence(refusal, OK))
    result = await client.send_user_message("u", TextBody(msg="m"))
    assert result.message_ids == {"u": "1"}
    assert route.call_count == 2
    assert 0.25 <= clock.sleeps[-1] < 0.5  # first backoff: 0.5 s times a jitter in [0.5, 1)


async def test_retry_after_is_honoured(client, api, clock: VirtualClock):
    api.post("/messages/users").mock(
        side_effect=sequence(
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "reach_limit"}), OK
        )
    )
    assert (await client.send_user_message("u", TextBody(msg="m"))).ok
    assert clock.sleeps == [7.0]


async def test_retries_are_bounded(make_client, api, clock: VirtualClock):
    route = api.post("/messages/users").mock(return_value=httpx.Response(503))
    client = make_client(retry=RetryPolicy(attempts=3, base=1, max_backoff=2))
    result = await client.send_user_message("u", TextBody(msg="m"))
    assert isinstance(result.failed["u"], ServerError)
    assert route.call_count == 4
    assert len(clock.sleeps) == 3
    assert all(0.5 <= s <= 2 for s in clock.sleeps)


@pytest.mark.parametrize(
    ("answer", "bucket"),
    [
        (httpx.Response(500), "unknown"),
        (httpx.Response(502), "unknown"),
        (httpx.ReadTimeout("slow"), "unknown"),
        (httpx.RemoteProtocolError("dropped"), "unknown"),
        (httpx.Response(400, json={"error": "illegal_argument"}), "failed"),
    ],
    ids=["500", "502", "read timeout", "dropped", "400"],
)
async def test_what_may_have_been_processed_or_cannot_improve_is_never_retried(
    client, api, answer, bucket
):
    route = api.post("/messages/users").mock(side_effect=sequence(answer, OK))
    result = await client.send_user_message("u", TextBody(msg="m"))
    assert route.call_count == 1
    assert "u" in getattr(result, bucket)


async def test_quota_exhausted_and_bad_request_keep_their_types(client, api):
    api.post("/messages/users").mock(
        return_value=httpx.Response(429, json={"error": "resource_limited"})
    )
    assert isinstance(
        (await client.send_user_message("u", TextBody(msg="m"))).failed["u"], QuotaExhaustedError
    )
    api.post("/messages/users").mock(return_value=httpx.Response(400, json={}))
    assert isinstance(
        (await client.send_user_message("u", TextBody(msg="m"))).failed["u"], BadRequestError
    )


async def test_retries_can_be_switched_off(make_client, api):
    route = api.post("/messages/users").mock(return_value=httpx.Response(503))
    client = make_client(retry=RetryPolicy(attempts=0, rate_limit_budget=0))
    await client.send_user_message("u", TextBody(msg="m"))
    assert route.call_count == 1


async def test_each_retry_takes_a_limiter_slot(make_client, api, clock: VirtualClock):
    api.post("/messages/chatgroups").mock(
        side_effect=sequence(
            httpx.Response(503), httpx.Response(200, json=envelope("/m", {"g": "1"}))
        )
    )
    client = make_client(rate_limits=RateLimits(groups=Rate(1, per=10)))
    start = clock.now()
    assert (await client.send_group_message("g", TextBody(msg="m"))).ok
    assert clock.now() - start >= 10  # the retry waited for a new unit of the window


async def test_reads_are_retried_too(client, api):
    route = api.get("/chatmessages/2018112717").mock(
        side_effect=sequence(
            httpx.Response(503),
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"data": [{"url": "https://x/y"}]}),
        )
    )
    assert (await client.get_history_file("2018112717")).url == "https://x/y"
    assert route.call_count == 3


async def test_rate_limit_refusals_are_retried_for_a_time_budget_not_a_count(
    make_client, api, clock: VirtualClock
):
    route = api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(429, json={"error": "reach_limit"})
    )
    policy = RetryPolicy(attempts=1, base=1, max_backoff=4, rate_limit_budget=20)
    client = make_client(retry=policy)
    start = clock.now()
    with pytest.raises(
        RateLimitedError, match=r"retrying for 20 s \(RetryPolicy.rate_limit_budget\)"
    ):
        await client.get_history_file("2018112717")
    assert clock.now() - start >= 20
    assert route.call_count > policy.attempts + 1  # refusals are not counted against attempts
    assert sum(clock.sleeps) < 20 + 4 + 2  # the budget, not a runaway


async def test_a_refusal_within_the_budget_is_retried_until_it_goes_through(
    make_client, api, clock: VirtualClock
):
    refused = httpx.Response(429, json={"error": "reach_limit"})
    route = api.post("/messages/users").mock(side_effect=sequence(*[refused] * 12, OK))
    client = make_client(retry=RetryPolicy(attempts=1, base=0.5, max_backoff=2))
    result = await client.send_user_message("u", TextBody(msg="m"))
    assert result.ok  # 12 refusals: more than any attempt count, well within 300 s
    assert route.call_count == 13


async def test_without_a_budget_a_refusal_is_raised_at_once(make_client, api):
    api.post("/messages/users").mock(
        return_value=httpx.Response(429, json={"error": "reach_limit"})
    )
    client = make_client(retry=RetryPolicy(attempts=3, rate_limit_budget=0))
    result = await client.send_user_message("u", TextBody(msg="m"))
    assert isinstance(result.failed["u"], RateLimitedError)
    assert result.failed["u"].budget == 0


def test_policy_validation_and_delays():
    with pytest.raises(ValidationError):
        RetryPolicy(attempts=-1)
    policy = RetryPolicy(base=1, max_backoff=5)
    rng = random.Random(1)
    delays = [policy.delay(attempt, None, rng) for attempt in range(6)]
    assert all(d <= 5 for d in delays)
    assert delays[0] < 1
    assert policy.delay(0, 60, rng) == 5  # Retry-After is capped by max_backoff
    assert policy.delay(0, 2, rng) == 2


async def test_resource_limited_is_retried_a_bounded_number_of_times_after_long_waits(
    client, api, clock: VirtualClock
):
    route = api.post("/messages/users").mock(
        return_value=httpx.Response(429, json={"error": "resource_limited"})
    )
    result = await client.send_user_message("u", TextBody(msg="m"))
    assert isinstance(result.failed["u"], QuotaExhaustedError)
    assert route.call_count == 3  # the first attempt and two retries
    assert clock.sleeps == [30.0, 30.0]


async def test_resource_limited_then_success(client, api):
    api.post("/messages/users").mock(
        side_effect=sequence(httpx.Response(429, json={"error": "resource_limited"}), OK)
    )
    assert (await client.send_user_message("u", TextBody(msg="m"))).ok
