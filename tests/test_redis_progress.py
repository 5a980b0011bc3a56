"""RedisProgressStore against a real redis-server: one worker per job, and takeover."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import anyio.streams.buffered
import pytest
import redis.asyncio

from agora_chat_async import (
    JobLeaseError,
    JobProgress,
    Rate,
    RateLimits,
    RedisProgressStore,
    TextBody,
    ValidationError,
)
from agora_chat_async.testing import Emulator, EmulatorServer

ROOT = Path(__file__).parent.parent


async def test_one_worker_holds_a_job_and_a_save_without_the_lease_is_refused(redis_server):
    client = redis.asyncio.from_url(redis_server.url)
    try:
        await client.flushdb()
        first = RedisProgressStore(client, lease=5, worker="a")
        second = RedisProgressStore(client, lease=5, worker="b")
        await first.acquire("job")
        await first.acquire("job")  # its own lease: kept
        with pytest.raises(JobLeaseError, match="being run by worker 'a'"):
            await second.acquire("job")
        progress = JobProgress(count=3, sha256="x")
        progress.done.add(1)
        await first.save("job", progress)
        with pytest.raises(JobLeaseError, match="no longer this worker's"):
            await second.save("job", progress)
        loaded = await second.load("job")
        assert loaded is not None
        assert loaded.done.pairs() == [(1, 2)]
        await first.release("job")
        await second.acquire("job")  # free again
        with pytest.raises(JobLeaseError):
            await first.renew("job")
        with pytest.raises(ValidationError, match="lease"):
            RedisProgressStore(client, lease=0)
    finally:
        await client.aclose()


async def test_a_worker_killed_mid_job_is_taken_over_once_its_lease_expires(redis_server):
    """Worker A (a process) is SIGKILLed mid-job; worker B waits for A's lease to expire,
    then finishes the job: nobody gets the message twice, nobody is lost but whom B names
    uncertain."""
    emulator = Emulator()
    users = [f"user-{index:03d}" for index in range(120)]
    with EmulatorServer(emulator) as server:
        command = [sys.executable, "-m", "tests.durable_worker", server.url, redis_server.url]
        worker = await anyio.open_process([*command, "sale", str(len(users)), "1.0"], cwd=ROOT)
        async with worker:
            assert worker.stdout is not None
            started = anyio.streams.buffered.BufferedByteReceiveStream(worker.stdout)
            with anyio.fail_after(20):
                assert await started.receive_until(b"\n", 100) == b"started"
                while len(emulator.deliveries) < 30:  # noqa: ASYNC110 - watching the emulator
                    await anyio.sleep(0.01)
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
        sent_by_a = len(emulator.deliveries)
        assert 0 < sent_by_a < len(users), "killed mid-job"

        client = redis.asyncio.from_url(redis_server.url)
        try:
            store = RedisProgressStore(client, lease=1.0, worker="b")
            limits = RateLimits(users=Rate(7, per=0.15), margin=0)
            async with emulator.client(rate_limits=limits) as chat:
                with anyio.fail_after(10):
                    while True:  # A's lease outlives A by up to a second
                        try:
                            async with chat.durable_fan_out(
                                users, TextBody(msg="durable"), job="sale", store=store
                            ) as results:
                                uncertain = set(results.unknown.values())
                                async for _ in results:
                                    pass
                            break
                        except JobLeaseError:
                            await anyio.sleep(0.1)
        finally:
            await client.aclose()
    times = Counter(d.recipient for d in emulator.deliveries)
    assert max(times.values()) == 1  # nobody twice
    assert set(users) - set(times) <= uncertain  # lost only whom B names uncertain
    assert len(uncertain) <= 2 * 7  # at most A's requests in flight (two workers of seven)


async def test_keys_begin_with_the_prefix_and_a_finished_job_expires(redis_server):
    client = redis.asyncio.from_url(redis_server.url)
    try:
        await client.flushdb()
        store = RedisProgressStore(client, worker="a", keep=60)
        await store.acquire("welcome")
        progress = JobProgress(count=2, sha256="x")
        progress.done.add(0)
        await store.save("welcome", progress)
        keys = sorted(key.decode() for key in await client.keys("*"))
        assert keys == ["agora-chat:job:{welcome}:lease", "agora-chat:job:{welcome}:progress"]
        assert await client.pttl("agora-chat:job:{welcome}:progress") == -1  # not finished
        progress.done.add(1)
        await store.save("welcome", progress)
        assert 0 < await client.pttl("agora-chat:job:{welcome}:progress") <= 60_000
        await store.release("welcome")
        forever = RedisProgressStore(client, worker="a", keep=None)
        await forever.acquire("welcome")
        await forever.save("welcome", progress)
        assert await client.pttl("agora-chat:job:{welcome}:progress") == -1
    finally:
        await client.aclose()


async def test_a_job_is_deleted_unless_another_worker_runs_it(redis_server, tmp_path):
    client = redis.asyncio.from_url(redis_server.url)
    try:
        await client.flushdb()
        first = RedisProgressStore(client, worker="a")
        second = RedisProgressStore(client, worker="b")
        await first.acquire("job")
        await first.save("job", JobProgress(count=3, sha256="x"))
        with pytest.raises(JobLeaseError, match="being run by another worker"):
            await second.delete("job")
        assert await first.load("job") is not None
        await first.delete("job")  # its own job: gone, lease and all
        assert await first.load("job") is None
        assert await client.keys("*") == []
        await second.acquire("job")  # free for anyone
    finally:
        await client.aclose()


@pytest.mark.parametrize("keep", [0, -1.0, True, "7"])
def test_keep_must_be_a_positive_number_of_seconds(keep):
    with pytest.raises(ValidationError, match="keep"):
        RedisProgressStore(redis.asyncio.Redis(), keep=keep)
