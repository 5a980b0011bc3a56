"""Three-way accounting against the emulator's delivery record, under seeded faults.

For every fault: every reported delivery happened exactly once, every reported failure did
not happen, every unknown is an ambiguous case, and nothing is duplicated.
"""

from __future__ import annotations

import pytest

from agora_chat_async import Rate, RateLimits, SendResult, TextBody
from agora_chat_async.testing import Emulator, Faults, MockClock

TEXT = TextBody(msg="accounting")


def check(result: SendResult, emulator: Emulator, recipients: list[str]) -> None:
    delivered = [d.recipient for d in emulator.deliveries]
    buckets = [set(result.message_ids), set(result.failed), set(result.unknown)]
    assert set().union(*buckets) == set(recipients), "every recipient is accounted for"
    assert sum(map(len, buckets)) == len(recipients), "in exactly one bucket"
    for recipient, message_id in result.message_ids.items():
        [delivery] = emulator.delivered_to(recipient)  # delivered exactly once
        assert delivery.message_id == message_id
    for recipient in result.failed:
        assert recipient not in delivered, "a reported failure did not happen"
    assert emulator.duplicates == 0


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
async def test_fan_out_under_faults(faults, unknown_expected):
    emulator = Emulator(clock=MockClock(start=0.0), seed=11, faults={"*": faults})
    recipients = [f"room-{index:06d}" for index in range(3000)]  # 300 requests
    async with emulator.client() as client:
        result = await client.send_room_message(recipients, TEXT)
    check(result, emulator, recipients)
    if unknown_expected:
        assert result.unknown, "the ambiguous cases are reported unknown"
        # Unknown recipients were in fact delivered (processed, answer lost): not resent.
        assert all(len(emulator.delivered_to(r)) == 1 for r in result.unknown)
    else:
        assert result.ok, "503s are retried until delivered"


async def test_a_server_enforcing_less_loses_nothing():
    emulator = Emulator(clock=MockClock(start=0.0), rate_limits=RateLimits(groups=Rate(14, per=1)))
    recipients = [f"g{index}" for index in range(300)]
    async with emulator.client() as client:
        result = await client.send_group_message(recipients, TEXT)
    check(result, emulator, recipients)
    assert result.ok
    refusals = emulator.refused["limit:groups"]
    assert refusals < 0.05 * sum(emulator.requests.values())
