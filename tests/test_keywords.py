"""Every keyword means what its docs say, and is checked before any side effect.

Each test here failed before the change that made it pass (issue "Contracts a caller can
rely on"): a keyword that was silently ignored, or accepted a value that broke later.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora_chat_async import (
    DEFAULT_TIMEOUT,
    AgoraChatClient,
    FileProgressStore,
    RedisLimiter,
    RetryPolicy,
    SlidingWindowLimiter,
    StaticToken,
    SystemClock,
    TextBody,
    ValidationError,
)
from agora_chat_async._responses import parse_retry_after
from agora_chat_async.testing import Emulator, MockClock

BASE = "https://a1.easemob.com"


def client(**options: Any) -> AgoraChatClient:
    return AgoraChatClient(BASE, "org", "app", auth=StaticToken("token"), **options)


def test_a_redis_limiter_refuses_the_system_clock_for_redis_time(redis_client: Any) -> None:
    """``clock=SystemClock()``, the default's own value, used to stop reading Redis's TIME."""
    with pytest.raises(ValidationError, match="clock") as refused:
        RedisLimiter(redis_client, clock=SystemClock())
    assert "TIME" in str(refused.value)
    assert RedisLimiter(redis_client, clock=MockClock()).clock is not None  # tests may


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
async def test_a_limiter_counting_one_app_refuses_a_client_of_another_at_once(
    shared: bool, redis_client: Any
) -> None:
    """Two apps on one RedisLimiter counted both under the first until its first round trip."""
    limiter = RedisLimiter(redis_client) if shared else SlidingWindowLimiter()
    async with client(limiter=limiter):
        async with client(limiter=limiter):  # the same app: one quota, shared
            pass
        with pytest.raises(ValidationError, match="'org#app'") as refused:
            AgoraChatClient(BASE, "org", "other-app", auth=StaticToken("t"), limiter=limiter)
        assert "limiter of its own" in str(refused.value)


def test_a_clock_and_a_limiter_on_another_clock_are_refused() -> None:
    """The docstring said the clock was the limiter's too; a given limiter kept its own."""
    mine, its = MockClock(), MockClock()
    with pytest.raises(ValidationError, match="clock"):
        client(clock=mine, limiter=SlidingWindowLimiter(clock=its))
    same = client(clock=mine, limiter=SlidingWindowLimiter(clock=mine))
    assert same.limiter.clock is mine
    # Without clock=, the client reads the limiter's clock (its retries wait on it).
    assert client(limiter=SlidingWindowLimiter(clock=its)).limiter.clock is its
    assert client(clock=SystemClock(), limiter=SlidingWindowLimiter()).limiter is not None


def test_a_timeout_with_an_http_client_is_refused_whatever_its_value() -> None:
    """``timeout=DEFAULT_TIMEOUT`` with ``http_client=`` was ignored (an identity check)."""
    http = httpx.AsyncClient()
    for timeout in (DEFAULT_TIMEOUT, httpx.Timeout(30.0, connect=5.0), 10.0, None):
        with pytest.raises(ValidationError, match="timeout"):
            client(http_client=http, timeout=timeout)
    client(http_client=http)


async def test_an_invalid_concurrency_touches_neither_the_store_nor_the_lease(
    tmp_path: Path,
) -> None:
    store = FileProgressStore(tmp_path / "progress.json")
    async with Emulator().client() as chat:
        for concurrency in (0, -1, 2.5, True):
            with pytest.raises(ValidationError, match="concurrency"):
                chat.durable_fan_out(
                    ["a"], TextBody(msg="x"), job="j", store=store, concurrency=concurrency
                )
    assert not (tmp_path / "progress.json").exists()
    assert not list(tmp_path.iterdir())  # no lock file either


@given(
    text=st.text(min_size=1).map(lambda text: text + "\ud800"),
    where=st.sampled_from(["to", "sender", "body", "ext", "ext-key"]),
)
async def test_a_lone_surrogate_anywhere_is_a_validation_error(text: str, where: str) -> None:
    """A surrogate in an id raised UnicodeEncodeError from deep in the encoder."""
    emulator = Emulator()
    async with emulator.client() as chat:
        with pytest.raises(ValidationError):
            if where == "to":
                await chat.send_user_message([text], TextBody(msg="x"))
            elif where == "sender":
                await chat.import_user_message(text, "bob", TextBody(msg="x"))
            elif where == "body":
                await chat.send_user_message("a", TextBody(msg=text))
            elif where == "ext":
                await chat.send_user_message("a", TextBody(msg="x"), ext={"k": text})
            else:
                await chat.send_user_message("a", TextBody(msg="x"), ext={text: 1})
    assert emulator.deliveries == []


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(value: str) -> None:
    """``Retry-After: nan`` became a NaN sleep."""
    assert parse_retry_after(value, now=0.0) is None
    assert parse_retry_after("2.5", now=0.0) == 2.5


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 2.5},
        {"attempts": True},
        {"quota_attempts": 1.5},
        {"base": math.nan},
        {"max_backoff": math.nan},
        {"rate_limit_budget": -1},
    ],
)
def test_a_retry_policy_takes_whole_attempts_and_real_durations(options: dict[str, Any]) -> None:
    """``RetryPolicy(attempts=2.5)`` was accepted."""
    with pytest.raises(ValidationError, match=next(iter(options))):
        RetryPolicy(**options)


def test_the_retries_jitter_comes_from_the_random_source_given() -> None:
    """The jitter's ``random.Random()`` could not be seeded (a test raised ``attempts`` to
    20 to hide a one-in-1,400 failure): the same seed gives the same delays."""
    policy = RetryPolicy()
    first = [policy.delay(attempt, None, random.Random(7)) for attempt in range(5)]
    again = [policy.delay(attempt, None, random.Random(7)) for attempt in range(5)]
    assert first == again
    assert client(rng=random.Random(7)) is not None


def test_every_request_declares_whether_a_repeat_is_harmless() -> None:
    """``Request`` defaulted to idempotent: a new POST endpoint that forgot the flag was
    retried after an ambiguous failure."""
    from agora_chat_async._request import Request

    with pytest.raises(TypeError, match="idempotent"):
        Request(method="POST", path="/messages/new")  # type: ignore[call-arg]


async def test_the_client_closes_what_it_made_and_never_what_it_was_given(
    redis_server: Any,
) -> None:
    """``aclose()`` closed a limiter the caller passed in (but not an ``http_client``)."""
    limiter = RedisLimiter.from_url(redis_server.url)
    http = httpx.AsyncClient()
    try:
        async with client(limiter=limiter, http_client=http):
            pass
        assert not http.is_closed
        # The limiter's own Redis connection is still open: it admits.
        permit = await limiter.acquire([("other", 1)])
        permit.settle()
    finally:
        await limiter.aclose()
        await http.aclose()
