"""Durable fan-outs: progress in a store, resumed exactly once after a crash anywhere."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora_chat_async import (
    FileProgressStore,
    JobProgress,
    ProgressStore,
    Rate,
    RateLimits,
    RedisProgressStore,
    SendResult,
    TextBody,
    ValidationError,
)
from agora_chat_async.testing import Emulator, MockClock

BODY = TextBody(msg="durable")
#: Seven users a request (the limit caps the batch), a second each: many requests, instantly.
LIMITS = RateLimits(users=Rate(7, per=1), margin=0)
IDS = [f"user-{index:03d}" for index in range(50)]


class Crash(BaseException):
    """The process dies: nothing after this runs."""


class CrashingStore(ProgressStore):
    """A store (a file by default) whose *n*-th save dies, before writing or after."""

    def __init__(
        self,
        path: Path,
        crash_at: int | None,
        *,
        after_write: bool,
        inner: ProgressStore | None = None,
    ) -> None:
        self.inner = inner or FileProgressStore(path)
        self.crash_at, self.after_write = crash_at, after_write
        self.heartbeat = self.inner.heartbeat
        self.saves = 0

    async def acquire(self, job: str) -> None:
        await self.inner.acquire(job)

    async def release(self, job: str) -> None:
        await self.inner.release(job)

    async def renew(self, job: str) -> None:
        await self.inner.renew(job)

    async def load(self, job: str) -> JobProgress | None:
        return await self.inner.load(job)

    async def save(self, job: str, progress: JobProgress) -> None:
        self.saves += 1
        if self.saves == self.crash_at and not self.after_write:
            raise Crash
        await self.inner.save(job, progress)
        if self.saves == self.crash_at:
            raise Crash


async def run(emulator: Emulator, store: ProgressStore, ids: list[str], **kwargs: object):
    """One worker's run of the job; its results, and the unknown it found."""
    delivered: list[str] = []
    async with emulator.client(rate_limits=LIMITS) as client:
        async with client.durable_fan_out(ids, BODY, job="sale", store=store, **kwargs) as results:
            unknown = dict(results.unknown)
            async for result in results:
                delivered += result.message_ids
    return delivered, unknown


async def test_a_job_sends_everything_once_and_a_finished_job_sends_nothing(tmp_path):
    emulator = Emulator(clock=MockClock(start=0.0))
    store = FileProgressStore(tmp_path / "sale.progress")
    delivered, unknown = await run(emulator, store, IDS)
    assert sorted(delivered) == IDS
    assert unknown == {}
    assert emulator.requests["users"] == 8  # 50 users, 7 a request
    again, _ = await run(emulator, store, IDS)
    assert again == []
    assert emulator.duplicates == 0
    progress = await store.load("sale")
    assert progress is not None
    assert progress.done.pairs() == [(0, 50)]  # positions, not ids: the store stays small


async def test_another_input_or_another_job_is_refused(tmp_path):
    emulator = Emulator(clock=MockClock(start=0.0))
    store = FileProgressStore(tmp_path / "sale.progress")
    await run(emulator, store, IDS[:10])
    with pytest.raises(ValidationError, match=r"^to: is not the input job 'sale' was started"):
        await run(emulator, store, IDS[:11])
    with pytest.raises(ValidationError, match=r"^to: is not the input"):
        await run(emulator, store, [*IDS[:9], "someone-else"])
    async with emulator.client() as client:
        with pytest.raises(ValidationError, match=r"^job: .* holds the progress of job 'sale'"):
            async with client.durable_fan_out(IDS[:10], BODY, job="other", store=store):
                pass
        with pytest.raises(ValidationError, match=r"^to: must be a sequence"):
            client.durable_fan_out(iter(IDS), BODY, job="sale", store=store)  # type: ignore[arg-type]


async def test_a_job_is_bound_to_its_message_and_a_finished_one_returns_at_once(tmp_path):
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock)
    store = FileProgressStore(tmp_path / "sale.progress")
    await run(emulator, store, IDS[:10])
    sent = emulator.requests["users"]
    async with emulator.client(rate_limits=LIMITS) as client:
        for other in (
            {"body": TextBody(msg="another text")},
            {"body": BODY, "ext": {"campaign": 2}},
            {"body": BODY, "target": "groups"},
        ):
            message = other.pop("body")
            with pytest.raises(ValidationError, match=r"^job: 'sale' was started with another"):
                async with client.durable_fan_out(
                    IDS[:10], message, job="sale", store=store, **other
                ):
                    pass
        assert emulator.requests["users"] == sent  # nothing was sent
        started = clock.now()
        async with client.durable_fan_out(IDS[:10], BODY, job="sale", store=store) as results:
            assert results.remaining == 0
            assert [result async for result in results] == []
        assert clock.now() == started  # no window waited out for nothing


async def test_a_job_screens_its_input_like_any_fan_out(tmp_path):
    emulator = Emulator(clock=MockClock(start=0.0))
    store = FileProgressStore(tmp_path / "sale.progress")
    ids = [*IDS[:20], "", IDS[3], *IDS[20:30]]
    total = recorded = SendResult()

    async def record(result: SendResult) -> None:
        nonlocal recorded
        recorded = recorded.merge(result)

    async with emulator.client(rate_limits=LIMITS) as client:
        fan_out = client.durable_fan_out(ids, BODY, job="sale", store=store, record=record)
        async with fan_out as results:
            async for result in results:
                total = total.merge(result)
    assert len(total.message_ids) == 30
    assert total.failed[""].field == "to[20]"  # type: ignore[attr-defined]
    assert total.duplicates == {IDS[3]: 1}
    assert emulator.duplicates == 0
    # The record (a per-recipient log) is given the screen's report like any other result.
    assert recorded == total


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    crash_at=st.integers(1, 20),
    after_write=st.booleans(),
    concurrency=st.sampled_from([1, 4]),
    kind=st.sampled_from(["file", "redis"]),
)
def test_a_crash_anywhere_never_duplicates_and_loses_only_what_it_names_unknown(
    tmp_path_factory, redis_server, crash_at, after_write, concurrency, kind
):
    """Kill points chosen by hypothesis, in the file store and in Redis alike."""

    async def scenario() -> None:
        path = tmp_path_factory.mktemp("job") / "sale.progress"
        client = redis.asyncio.from_url(redis_server.url)
        await client.flushdb()

        def store() -> ProgressStore:
            if kind == "file":
                return FileProgressStore(path)
            return RedisProgressStore(client, lease=5)

        try:
            emulator = Emulator(clock=MockClock(start=0.0))
            crashing = CrashingStore(path, crash_at, after_write=after_write, inner=store())
            with pytest.raises(Crash):  # alone, never in an exception group
                await run(emulator, crashing, IDS, concurrency=concurrency)
                raise Crash  # the job finished before the crash point: a crash after it
            # Another worker takes the job over from the same store.
            _, unknown = await run(emulator, store(), IDS, concurrency=concurrency)
        finally:
            await client.aclose()
        times = Counter(d.recipient for d in emulator.deliveries)
        assert emulator.duplicates == 0
        assert max(times.values(), default=0) <= 1  # nobody twice
        missing = set(IDS) - set(times)
        assert missing <= set(unknown.values())  # lost only what was named unknown
        assert len(unknown) <= 7 * concurrency  # at most the requests in flight at the crash

    anyio.run(scenario)


async def test_unknown_recipients_are_resent_only_when_asked(tmp_path):
    path = tmp_path / "sale.progress"
    emulator = Emulator(clock=MockClock(start=0.0))
    with pytest.raises(BaseException):  # noqa: PT011, B017 - the crash, maybe grouped
        await run(emulator, CrashingStore(path, 2, after_write=True), IDS, concurrency=1)
    # The first request was recorded in flight, then the worker died before sending it.
    _, unknown = await run(emulator, FileProgressStore(path), IDS)
    assert list(unknown.values()) == IDS[:7]
    assert sorted(d.recipient for d in emulator.deliveries) == IDS[7:]
    delivered, again = await run(emulator, FileProgressStore(path), IDS, resend_unknown=True)
    assert again == unknown  # still named, and this time sent
    assert sorted(delivered) == IDS[:7]
    assert emulator.duplicates == 0


async def test_a_job_resumed_within_a_window_of_its_last_send_waits_that_window_out(tmp_path):
    path = tmp_path / "sale.progress"
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock)
    with pytest.raises(BaseException):  # noqa: PT011, B017 - the crash, maybe grouped
        await run(emulator, CrashingStore(path, 4, after_write=True), IDS, concurrency=1)
    resumed = clock.now()
    async with emulator.client(rate_limits=LIMITS) as client:
        async with client.durable_fan_out(IDS, BODY, job="sale", store=FileProgressStore(path)):
            waited = clock.now() - resumed
    assert 0.9 < waited <= 1.0  # the rest of the one-second window the dead run sent in
    progress = await FileProgressStore(path).load("sale")
    assert progress is not None
    progress.saved_at = 0.0  # long ago
    await FileProgressStore(path).save("sale", progress)
    resumed = clock.now()
    async with emulator.client(rate_limits=LIMITS) as client:
        async with client.durable_fan_out(IDS, BODY, job="sale", store=FileProgressStore(path)):
            assert clock.now() == resumed  # no window to wait out


async def test_a_file_store_deletes_its_job_and_refuses_another(tmp_path):
    store = FileProgressStore(tmp_path / "sale.progress")
    await store.save("sale", JobProgress(count=2, sha256="x"))
    with pytest.raises(ValidationError, match="holds the progress of job 'sale'"):
        await store.delete("other")
    assert store.path.exists()
    await store.delete("sale")
    assert not store.path.exists()
    await store.delete("sale")  # nothing left: nothing to do


async def test_a_store_that_cannot_delete_says_so():
    class Minimal(ProgressStore):
        async def load(self, job: str) -> JobProgress | None:
            return None

        async def save(self, job: str, progress: JobProgress) -> None:
            pass

    with pytest.raises(NotImplementedError, match="Minimal cannot delete a job"):
        await Minimal().delete("job")
