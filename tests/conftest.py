"""Shared fixtures: a virtual clock, respx routes built from the reference's examples, clients."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from agora_chat_async import AgoraChatClient, Auth, Rate, RateLimits, StaticToken
from agora_chat_async.testing import MockClock, RedisServer
from agora_chat_async.testing._redis import INSTALL_HINT

pytest_plugins = ["agora_chat_async.testing._plugin"]

BASE_URL = "https://a1.easemob.com"
ORG = "XXXX"
APP = "YYYY"
API = f"{BASE_URL}/{ORG}/{APP}"
TOKEN = "YWMtSECRET-STATIC-TOKEN-0123456789"
UNLIMITED = Rate(10**9, per=1)
#: Client limits that never make a request wait.
NO_LIMITS = RateLimits(
    users=UNLIMITED, groups=UNLIMITED, rooms=UNLIMITED, other=UNLIMITED, send_calls=UNLIMITED
)


#: The clock of most tests: the public MockClock (each sleeper wakes at its own deadline).
VirtualClock = MockClock


def envelope(path: str, data: Any, *, action: str = "post", **extra: Any) -> dict[str, Any]:
    """The common response envelope of the reference pages."""
    return {
        "path": path,
        "uri": f"https://XXXX/XXXX/XXXX{path}",
        "timestamp": 1657254052191,
        "organization": "XXXX",
        "application": "e82bcc5f-XXXX-XXXX-a7c1-92de917ea2b0",
        "action": action,
        "data": data,
        "duration": 0,
        "applicationName": "XXXX",
        **extra,
    }


@pytest.fixture
def clock() -> MockClock:
    return MockClock()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
async def make_client(clock: VirtualClock) -> AsyncIterator[Any]:
    clients: list[AgoraChatClient] = []

    def make(
        auth: Auth | None = None, rate_limits: RateLimits | None = None, **kwargs: Any
    ) -> AgoraChatClient:
        client = AgoraChatClient(
            BASE_URL,
            ORG,
            APP,
            auth=auth or StaticToken(TOKEN),
            rate_limits=rate_limits,
            clock=kwargs.pop("clock", clock),
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for made in clients:
        await made.aclose()


@pytest.fixture
async def client(make_client: Any, api: respx.MockRouter) -> AsyncIterator[AgoraChatClient]:
    async with make_client() as client:
        yield client


def json_body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def require_redis_server() -> None:
    """Skip without redis-server; fail instead when AGORA_CHAT_REQUIRE_REDIS=1 (CI)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("AGORA_CHAT_REQUIRE_REDIS") == "1":
            pytest.fail(f"AGORA_CHAT_REQUIRE_REDIS=1 but {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free local port, stopped after the test."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_cluster() -> Iterator[Any]:
    """A real three-master Redis Cluster on local ports, stopped after the test."""
    from tests.cluster import RedisCluster

    require_redis_server()
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
async def redis_client(redis_server: Any) -> AsyncIterator[Any]:
    """A ``redis.asyncio`` client of ``redis_server``."""
    import redis.asyncio

    client = redis.asyncio.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
