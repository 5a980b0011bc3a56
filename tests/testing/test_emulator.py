"""The emulator's behaviour: quotas and policies, faults, files, history, recall, inspection."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime

import httpx
import pytest

from agora_chat_async import (
    ConnectError,
    ImageSize,
    QuotaExhaustedError,
    Rate,
    RateLimitedError,
    RateLimits,
    RetryPolicy,
    ServerError,
    TextBody,
)
from agora_chat_async.testing import (
    Emulator,
    EmulatorServer,
    Faults,
    MockClock,
    ScaledClock,
)

TEXT = TextBody(msg="hello")
NO_RETRY = RetryPolicy(attempts=0, rate_limit_budget=0)


def unlimited_client(emulator: Emulator):
    """A client whose own limiter does not hold it back, to probe the emulator's quotas."""
    huge = Rate(10**9, per=1)
    return emulator.client(
        rate_limits=RateLimits(users=huge, groups=huge, rooms=huge, other=huge, send_calls=huge),
        retry=NO_RETRY,
    )


@pytest.mark.parametrize("policy", ["sliding", "fixed", "token_bucket"])
async def test_group_quota_refuses_the_21st_target_in_a_second(policy):
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock, policy=policy)
    async with unlimited_client(emulator) as client:
        first = await client.send_group_message([f"g{i}" for i in range(20)], TEXT)
        assert first.ok
        refused = await client.send_group_message("g20", TEXT)
        error = refused.failed["g20"]
        assert isinstance(error, RateLimitedError)
        assert error.status_code == 403
        assert "message send reach limit" in error.description
    assert emulator.refused["limit:groups"] == 1
    assert emulator.peak_units["groups"] == 20
    # When each was counted or refused, on the emulator's clock (ms), with its units.
    groups = [(units, when) for name, when, units in emulator.admissions if name == "groups"]
    assert sum(units for units, _ in groups) == 20
    assert emulator.limit_refusals == [("groups", emulator.wall_time() * 1000, 1)]


async def test_sliding_and_fixed_windows_differ_at_the_boundary():
    results = {}
    for policy in ("sliding", "fixed"):
        clock = MockClock(start=0.5)
        emulator = Emulator(clock=clock, policy=policy)
        async with unlimited_client(emulator) as client:
            await client.send_room_message([f"r{i}" for i in range(10)] * 1, TEXT)
            for batch in range(9):
                await client.send_room_message([f"r{batch}-{i}" for i in range(10)], TEXT)
            clock.advance(0.6)  # t = 1.1: a new fixed window, but the sliding one is full
            results[policy] = (await client.send_room_message("late", TEXT)).ok
    assert results == {"sliding": False, "fixed": True}


async def test_token_bucket_refills_at_the_rate():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock, policy="token_bucket")
    async with unlimited_client(emulator) as client:
        assert (await client.send_group_message([f"g{i}" for i in range(20)], TEXT)).ok
        clock.advance(0.15)  # 3 tokens back at 20 a second
        assert (await client.send_group_message(["a", "b", "c"], TEXT)).ok
        assert not (await client.send_group_message("d", TEXT)).ok


async def test_other_endpoints_share_100_calls_a_second_and_answer_429_reach_limit():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock, retry_after=1)
    async with unlimited_client(emulator) as client:
        for _ in range(100):
            await client.delete_conversation("u1", "u2", "chat")
        with pytest.raises(RateLimitedError) as caught:
            await client.delete_conversation("u1", "u2", "chat")
    assert caught.value.status_code == 429
    assert caught.value.error == "reach_limit"
    assert caught.value.retry_after == 1.0


async def test_plan_quota_answers_resource_limited():
    emulator = Emulator(clock=MockClock(), plan_quota=5)
    async with emulator.client() as client:
        assert (await client.send_user_message([f"u{i}" for i in range(5)], TEXT)).ok
        result = await client.send_user_message("u5", TEXT)
    assert isinstance(result.failed["u5"], QuotaExhaustedError)
    assert emulator.refused["plan"] == 3  # the attempt and RetryPolicy.quota_attempts retries


async def test_optional_call_rate_on_sends():
    emulator = Emulator(clock=MockClock(), rate_limits=RateLimits(send_calls=Rate(2, per=1)))
    async with emulator.client(retry=NO_RETRY) as client:
        await client.send_user_message("a", TEXT)
        await client.send_user_message("b", TEXT)
        result = await client.send_user_message("c", TEXT)
    assert result.failed["c"].status_code == 429


async def test_the_clients_limiter_and_the_emulator_agree_on_a_shared_clock():
    """With the documented quotas on both sides, a fan-out meets no refusal."""
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock)
    async with emulator.client() as client:
        users = await client.send_user_message([f"user-{i:05d}" for i in range(15_000)], TEXT)
        groups = await client.send_group_message([f"g{i}" for i in range(100)], TEXT)
    assert users.ok
    assert groups.ok
    assert emulator.refused == {}
    assert 5000 < emulator.peak_units["users"] <= 6000
    assert emulator.peak_units["groups"] <= 20
    assert clock.now() >= 120  # 15,000 users need two more minutes after the first 6,000


def test_scaled_clock_runs_faster_than_real_time():
    clock = ScaledClock(60)
    assert clock.now() == pytest.approx(__import__("time").monotonic() * 60, rel=1e-3)
    with pytest.raises(ValueError, match="scale"):
        ScaledClock(0)


def test_mock_clock_cannot_go_backwards():
    with pytest.raises(ValueError, match="backwards"):
        MockClock().advance(-1)


def test_unknown_fault_endpoints_are_refused():
    with pytest.raises(ValueError, match="unknown endpoint"):
        Emulator(faults={"sendz": Faults(refuse_503=1.0)})
    with pytest.raises(ValueError, match="probability"):
        Faults(refuse_503=1.5)


# -- faults -----------------------------------------------------------------------------------


async def test_503_is_not_processed_and_reported_failed():
    emulator = Emulator(clock=MockClock(), faults={"users": Faults(refuse_503=1.0)})
    async with emulator.client(retry=NO_RETRY) as client:
        result = await client.send_user_message(["a", "b"], TEXT)
    assert set(result.failed) == {"a", "b"}
    assert all(isinstance(e, ServerError) for e in result.failed.values())
    assert emulator.deliveries == []


async def test_processed_then_500_is_delivered_but_unknown_to_the_client():
    emulator = Emulator(clock=MockClock(), faults={"users": Faults(process_then_500=1.0)})
    async with emulator.client() as client:
        result = await client.send_user_message(["a", "b"], TEXT)
    assert set(result.unknown) == {"a", "b"}
    assert {d.recipient for d in emulator.deliveries} == {"a", "b"}


async def test_dropped_connection_after_processing_is_unknown_in_process():
    emulator = Emulator(clock=MockClock(), faults={"*": Faults(drop_connection=1.0)})
    async with emulator.client() as client:
        result = await client.send_group_message("g", TEXT)
    assert set(result.unknown) == {"g"}
    assert emulator.faults_injected["drop_connection"] == 1
    assert len(emulator.deliveries) == 1


async def test_faults_are_reproducible_with_a_seed():
    outcomes = []
    for _ in range(2):
        emulator = Emulator(
            clock=MockClock(),
            seed=7,
            faults={"users": Faults(refuse_503=0.3, process_then_500=0.2)},
        )
        async with emulator.client(retry=NO_RETRY) as client:
            result = await client.send_user_message([f"u{i:04d}" for i in range(3000)], TEXT)
        outcomes.append((sorted(result.failed), sorted(result.unknown)))
    assert outcomes[0] == outcomes[1]
    failed, unknown = outcomes[0]
    assert failed
    assert unknown


async def test_over_a_socket_latency_makes_a_read_timeout_and_drops_are_real():
    emulator = Emulator(faults={"users": Faults(latency=0.5)})
    with EmulatorServer(emulator) as server:
        from agora_chat_async import AgoraChatClient, StaticToken

        async with AgoraChatClient(
            server.url, "test-org", "test-app", auth=StaticToken("test-token"), timeout=0.1
        ) as client:
            result = await client.send_user_message("slow", TEXT)
            assert set(result.unknown) == {"slow"}
        emulator.faults = {"groups": Faults(drop_connection=1.0)}
        async with AgoraChatClient(
            server.url, "test-org", "test-app", auth=StaticToken("test-token")
        ) as client:
            dropped = await client.send_group_message("g", TEXT)
            assert set(dropped.unknown) == {"g"}
            async with httpx.AsyncClient() as http:
                stats = (await http.get(f"{server.url}/_emulator/stats")).json()
    assert stats["deliveries"] == 2
    assert {d.recipient for d in emulator.deliveries} == {"slow", "g"}


async def test_a_stopped_server_refuses_connections():
    emulator = Emulator()
    server = EmulatorServer(emulator)
    url = server.url
    from agora_chat_async import AgoraChatClient, StaticToken

    async with AgoraChatClient(
        url, "test-org", "test-app", auth=StaticToken("t"), retry=NO_RETRY
    ) as client:
        result = await client.send_user_message("a", TEXT)
    assert isinstance(result.failed["a"], ConnectError)


# -- files, history, recall, inspection --------------------------------------------------------


async def test_files_round_trip_with_share_secret_and_thumbnails():
    emulator = Emulator(clock=MockClock())
    async with emulator.client() as client:
        small = await client.upload_file(b"tiny image", filename="a.png", restrict_access=True)
        big = await client.upload_file(
            b"x" * 20_000, filename="b.jpg", thumbnail_size=ImageSize(width=64, height=32)
        )
        sink = io.BytesIO()
        await client.download_file(small.uuid, sink, share_secret=small.share_secret)
        assert sink.getvalue() == b"tiny image"
        thumb = io.BytesIO()
        await client.download_file(
            small.uuid, thumb, share_secret=small.share_secret, thumbnail=True
        )
        assert thumb.getvalue() == b"tiny image"  # 10 KB or less: the thumbnail is the image
        big_thumb = io.BytesIO()
        await client.download_file(big.uuid, big_thumb, thumbnail=True)
        assert big_thumb.getvalue().startswith(b"thumbnail 64x32")
        from agora_chat_async import AuthenticationError

        with pytest.raises(AuthenticationError, match="share-secret"):
            await client.download_file(small.uuid, io.BytesIO(), share_secret="wrong")


async def test_oversize_upload_gets_413():
    emulator = Emulator(clock=MockClock(), max_file_bytes=1000)
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as http:
        response = await http.post(
            "/test-org/test-app/chatfiles",
            headers={"Authorization": "Bearer test-token"},
            files={"file": ("a.bin", b"x" * 1001)},
        )
    assert response.status_code == 413


async def test_history_is_built_from_what_was_received():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock, history_filler=500)
    async with emulator.client() as client:
        sent = await client.send_user_message(
            ["alice", "bob"], TEXT, sender="carol", ext={"k": "v"}
        )
        hour = datetime.fromtimestamp(emulator.wall_time(), tz=UTC)
        link = await client.get_history_file(hour)
        records = [r async for r in client.iter_history(hour)]
    real = [r for r in records if not r.message_id.startswith("filler-")]
    assert {r.message_id for r in real} == set(sent.message_ids.values())
    assert all(r.sender == "carol" and r.ext == {"k": "v"} for r in real)
    assert all(r.bodies == (TEXT,) for r in real)
    assert len(records) == 502
    assert link.expires_at is not None
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(link.url)).status_code == 200
        clock.advance(3601)
        expired = await http.get(link.url)
        assert expired.status_code == 403
        assert b"AccessDenied" in expired.content
        forged = await http.get(link.url.replace("Signature=", "Signature=0"))
        assert forged.status_code == 403


async def test_recall_follows_the_documented_window_and_reasons():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock)
    async with emulator.client() as client:
        sent = await client.send_user_message(["a", "b"], TEXT)
        first, second = sent.message_ids["a"], sent.message_ids["b"]
        wrong_to = await client.recall_message(first, "b", "chat")
        assert (wrong_to.recalled, wrong_to.reason) == (False, "can't find msg to")
        ok = await client.recall_message(first, "a", "chat")
        assert ok.recalled
        again = await client.recall_message(first, "a", "chat")
        assert again.reason == "not_found msg"
        clock.advance(121)
        late = await client.recall_message(second, "b", "chat", force=True)
        assert late.reason == "exceed recall time limit"
        unknown = await client.recall_message("123", "a", "chat")
        assert unknown.reason == "not_found msg"
    assert emulator.recalled == {first}


async def test_imports_and_deletions_are_recorded_not_delivered():
    emulator = Emulator(clock=MockClock())
    async with emulator.client() as client:
        imported = await client.import_group_message(
            "u1", "g1", TEXT, is_ack_read=True, msg_timestamp=1656906628428
        )
        await client.delete_conversation("u1", "g1", "groupchat", delete_roam=False)
    [record] = emulator.imports
    assert (record.message_id, record.chat_type, record.target) == (
        imported.message_id,
        "groupchat",
        "g1",
    )
    assert record.msg_timestamp == 1656906628428
    assert emulator.deleted_conversations == [("u1", "g1", "groupchat", False)]
    assert emulator.deliveries == []


async def test_inspection_counts_duplicates_and_resets():
    emulator = Emulator(clock=MockClock())
    async with emulator.client() as client:
        await client.send_user_message(["a", "b"], TEXT)
        await client.send_user_message("a", TEXT)
        await client.send_user_message("a", TextBody(msg="different"))
    assert emulator.duplicates == 1
    assert len(emulator.delivered_to("a")) == 3
    stats = emulator.stats()
    assert stats["deliveries"] == 4
    assert stats["requests"] == {"users": 3}
    assert stats["limits"]["users"] == [6000, 60]
    emulator.reset()
    assert emulator.deliveries == []
    assert emulator.stats()["peak_units"]["users"] == 0


async def test_client_credentials_against_the_emulator():
    from agora_chat_async import ClientCredentials

    emulator = Emulator(clock=MockClock(), clients={"cid": "secret"}, tokens=())
    async with emulator.client(auth=ClientCredentials("cid", "secret")) as client:
        assert (await client.send_user_message("a", TEXT)).ok
    with pytest.raises(ValueError, match="no static token"):
        emulator.client()


async def test_refusals_that_were_not_processed_are_retried_and_delivered_once():
    """503s and quota refusals are retried; nothing is lost and nothing duplicated."""
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock, seed=3, faults={"groups": Faults(refuse_503=0.3)})
    huge = Rate(10**9, per=1)
    # The default 5 retries: one request in about 1,400 meets 503 six times (0.3 ** 6), and
    # which one depends on the retries' jitter, seeded here like the emulator's faults.
    rng = random.Random(3)
    async with emulator.client(rate_limits=RateLimits(groups=huge), rng=rng) as client:
        result = await client.send_group_message([f"g{i}" for i in range(90)], TEXT)
    assert result.ok
    assert emulator.refused["fault:503"] > 0
    assert emulator.refused["limit:groups"] > 0  # our limiter was told 10**9 a second
    assert len(emulator.deliveries) == 90
    assert emulator.duplicates == 0


async def test_the_deliveries_timeline_lists_each_recipient_at_its_time():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock)
    async with emulator.client() as client:
        await client.send_user_message(["alice", "bob"], TEXT)
        clock.advance(2.5)
        await client.send_group_message("g1", TEXT)
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://e") as http:
        response = await http.get("/_emulator/deliveries")
        stats = (await http.get("/_emulator/stats")).json()
    timeline = response.json()["deliveries"]
    start = timeline[0][0]
    assert [[t - start, kind, who] for t, kind, who in timeline] == [
        [0, "chat", "alice"],
        [0, "chat", "bob"],
        [2500, "groupchat", "g1"],
    ]
    assert "deliveries" not in stats["requests"]  # inspection is not counted as traffic
