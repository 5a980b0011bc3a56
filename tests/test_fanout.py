"""fan_out: unbounded recipients, bounded memory, exact accounting, clean cancellation."""

from __future__ import annotations

import anyio
import httpx
import pytest

from agora_chat_async import (
    BatchSplit,
    LimiterWait,
    PayloadTooLargeError,
    RateLimited,
    RequestSent,
    Retrying,
    SendResult,
    TextBody,
    ValidationError,
)
from agora_chat_async.testing import Emulator, Faults, MockClock

from .conftest import envelope, json_body

TEXT = TextBody(msg="hello")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(clock=MockClock(start=0.0))


async def test_fan_out_from_an_async_iterable(emulator):
    async def ids():
        for index in range(2000):
            yield f"user-{index:05d}"

    seen: list[SendResult] = []
    async with emulator.client() as client:
        async with client.fan_out(ids(), TEXT, progress=seen.append) as results:
            collected = [result async for result in results]
    assert collected == seen
    delivered = {r for result in collected for r in result.message_ids}
    assert len(delivered) == 2000
    assert len(emulator.deliveries) == 2000
    assert emulator.duplicates == 0


@pytest.mark.parametrize("target", ["groups", "rooms"])
async def test_fan_out_to_groups_and_rooms(emulator, target):
    async with (
        emulator.client() as client,
        client.fan_out(
            (f"t{i}" for i in range(250)),
            TEXT,
            target=target,
            level="high" if target == "rooms" else None,
        ) as results,
    ):
        total = 0
        async for result in results:
            total += len(result.message_ids)
    assert total == 250
    assert {d.chat_type for d in emulator.deliveries} == {
        "groups": {"groupchat"},
        "rooms": {"chatroom"},
    }[target]


@pytest.mark.parametrize(
    ("target", "recipients", "requests"),
    [
        ("groups", 45, 16),  # 20 a second, 3 a request: 6 x 3 + 2 a window, no shrinking
        ("rooms", 250, 26),  # 100 a second less the bulk headroom: 9 x 10 + 9 a window
    ],
)
async def test_a_fan_outs_batches_tile_the_windows(emulator, target, recipients, requests):
    events: list[object] = []
    async with (
        emulator.client(on_event=events.append) as client,
        client.fan_out((f"t{i}" for i in range(recipients)), TEXT, target=target) as results,
    ):
        async for result in results:
            assert not result.failed
            assert not result.unknown
    sent = [e for e in events if isinstance(e, RequestSent)]
    assert len(sent) == requests
    assert emulator.refused == {}


async def test_recipients_are_read_lazily_and_leaving_early_cancels_the_rest(emulator):
    produced = 0

    def endless():
        nonlocal produced
        while True:
            produced += 1
            yield f"user-{produced:09d}"

    async with emulator.client() as client:
        async with client.fan_out(endless(), TEXT, concurrency=2) as results:
            async for _ in results:
                break
    # Only what the bounded pipeline could hold was ever read from the endless source.
    assert produced < 5000
    assert len(emulator.deliveries) < produced


async def test_cancelling_the_consumer_leaves_no_task_and_no_capacity_behind():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock)
    async with emulator.client() as client:
        with anyio.move_on_after(1) as scope:  # real time: the fan-out blocks on the quota
            async with client.fan_out(
                (f"g{i}" for i in range(10**6)), TEXT, target="groups"
            ) as results:
                async for _ in results:
                    await anyio.sleep_forever()
        assert scope.cancelled_caught
        # Nothing is left waiting in the limiter: a new send starts once time allows.
        clock.advance(2)
        assert (await client.send_group_message("late", TEXT)).ok


async def test_using_results_outside_async_with_is_an_error(emulator):
    async with emulator.client() as client:
        fan_out = client.fan_out(["a"], TEXT)
        with pytest.raises(RuntimeError, match="async with"):
            await fan_out.__anext__()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"target": "channels"}, "target"),
        ({"level": "high"}, "level"),
        ({"sender": ""}, "sender"),
    ],
)
async def test_invalid_fan_out_arguments(emulator, kwargs, field):
    async with emulator.client() as client:
        with pytest.raises(ValidationError) as caught:
            client.fan_out(["a"], TEXT, **kwargs)
    assert caught.value.field == field


async def fanned(client, ids, **options) -> SendResult:
    total = SendResult()
    async with client.fan_out(ids, TEXT, **options) as results:
        async for result in results:
            total = total.merge(result)
    return total


async def test_a_duplicate_id_is_sent_once_and_counted(emulator):
    ids = [f"user-{index:03d}" for index in range(310)]
    ids.insert(200, "user-007")  # 311 ids, one of them twice
    async with emulator.client() as client:
        total = await fanned(client, iter(ids))
    assert (len(total.message_ids), len(total.failed), len(total.unknown)) == (310, 0, 0)
    assert total.duplicates == {"user-007": 1}
    assert len(emulator.deliveries) == 310


async def test_a_blank_id_fails_alone_with_its_position_and_the_rest_go_on(emulator):
    ids = [f"user-{index:04d}" for index in range(2000)]
    ids[1000] = ""
    async with emulator.client() as client:
        total = await fanned(client, (i for i in ids))
    assert len(total.message_ids) == 1999
    assert list(total.failed) == [""]
    error = total.failed[""]
    assert isinstance(error, ValidationError)
    assert error.field == "to[1000]"
    assert total.recipients == 2000


async def test_every_id_that_cannot_be_sent_fails_on_its_own(emulator):
    too_long = "x" * 6000
    ids = ["a", " ", 7, too_long, "b", "", "a"]
    async with emulator.client() as client:
        total = await fanned(client, ids)
    assert set(total.message_ids) == {"a", "b"}
    assert {key: error.field for key, error in total.failed.items()} == {
        " ": "to[1]",
        "7": "to[2]",
        too_long: "to[3]",
        "": "to[5]",
    }
    assert total.duplicates == {"a": 1}


async def test_a_single_string_is_not_taken_for_an_iterable(emulator):
    async with emulator.client() as client:
        with pytest.raises(ValidationError, match="single string"):
            client.fan_out("alice", TEXT)


async def test_413_splits_the_batch_and_resends_the_halves(make_client, api):
    events = []

    def handler(request: httpx.Request) -> httpx.Response:
        to = json_body(request)["to"]
        if len(to) > 2:
            return httpx.Response(413, json={"error": "request_entity_too_large"})
        return httpx.Response(200, json=envelope("/messages/users", dict.fromkeys(to, "1")))

    route = api.post("/messages/users").mock(side_effect=handler)
    client = make_client(on_event=events.append)
    result = await client.send_user_message([f"u{i}" for i in range(8)], TEXT)
    assert result.ok
    assert len(result.message_ids) == 8
    assert route.call_count == 1 + 2 + 4
    assert [e.size for e in events if isinstance(e, BatchSplit)] == [8, 4, 4]


async def test_a_single_recipient_still_too_large_fails(client, api):
    api.post("/messages/users").mock(
        return_value=httpx.Response(413, json={"error": "request_entity_too_large"})
    )
    result = await client.send_user_message(["a", "b"], TEXT)
    assert all(isinstance(e, PayloadTooLargeError) for e in result.failed.values())
    assert set(result.failed) == {"a", "b"}


async def test_retry_unknown_is_opt_in():
    emulator = Emulator(clock=MockClock(), seed=2, faults={"groups": Faults(process_then_500=0.5)})
    async with emulator.client() as client:
        careful = await client.send_group_message([f"a{i}" for i in range(30)], TEXT)
        assert careful.unknown
        assert emulator.duplicates == 0
        eager = await client.send_group_message(
            [f"b{i}" for i in range(30)], TEXT, retry_unknown=True
        )
    assert len(eager.unknown) < len(careful.unknown)
    assert emulator.duplicates > 0  # the price of retry_unknown: some groups got it twice


async def test_events_report_requests_waits_refusals_and_retries():
    events = []
    clock = MockClock(start=0.0)
    emulator = Emulator(
        clock=clock, faults={"groups": Faults(refuse_503=0.5)}, seed=4, retry_after=0.5
    )
    from agora_chat_async import Rate, RateLimits

    async with emulator.client(
        rate_limits=RateLimits(groups=Rate(30, per=1)), on_event=events.append
    ) as client:
        await client.send_group_message([f"g{i}" for i in range(200)], TEXT)
    kinds = {type(e) for e in events}
    assert {RequestSent, LimiterWait, Retrying, RateLimited} <= kinds
    for event in events:
        assert "test-token" not in repr(event)
