"""Messages to selected members of a group or room: 20 members a request, every member
accounted for (``_members.py``)."""

from __future__ import annotations

import httpx
import pytest

from agora_chat_async import OutcomeUnknownError, TextBody, ValidationError
from agora_chat_async.testing import Emulator

from .conftest import envelope, json_body

HI = TextBody(msg="hi")


async def test_45_members_go_in_requests_of_20_and_each_is_accounted_for(client, api):
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        users = json_body(request)["users"]
        calls.append(users)
        if "m25" in users:
            return httpx.Response(400, json={"error": "message_send_error"})
        if "m40" in users:
            raise httpx.ReadTimeout("slow")
        return httpx.Response(200, json=envelope("/messages/chatgroups", {"g1": str(len(calls))}))

    api.post("/messages/chatgroups/users").mock(side_effect=answer)
    members = [f"m{i}" for i in range(45)] + ["m0"]
    result = await client.send_group_members_message("g1", members, HI)
    assert sorted(len(users) for users in calls) == [5, 20, 20]
    assert result.recipients == 45
    assert result.duplicates == {"m0": 1}
    assert set(result.failed) == {f"m{i}" for i in range(20, 40)}
    assert set(result.unknown) == {f"m{i}" for i in range(40, 45)}
    assert isinstance(result.unknown["m40"], OutcomeUnknownError)
    assert len(result.message_ids) == 20


async def test_an_answer_without_the_groups_message_id_is_unknown(client, api):
    api.post("/messages/chatrooms/users").mock(
        return_value=httpx.Response(200, json=envelope("/messages/chatrooms", {"other": "1"}))
    )
    result = await client.send_room_members_message("r1", ["a", "b"], HI, level="high")
    assert set(result.unknown) == {"a", "b"}
    assert json_body(api.calls.last.request)["chatroom_msg_level"] == "high"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.send_group_members_message("", ["a"], HI), "group"),
        (lambda c: c.send_group_members_message("g", [], HI), "members"),
        (lambda c: c.send_group_members_message("g", ["a"], HI, ext=None, sender=""), "sender"),
        (lambda c: c.send_room_members_message("r", ["a"], HI, level="top"), "level"),
        (lambda c: c.send_room_members_message("r", ["a"], TextBody(msg="x" * 3001)), "body"),
    ],
)
async def test_members_arguments_are_checked_before_sending(client, api, call, field):
    with pytest.raises(ValidationError) as caught:
        await call(client)
    assert caught.value.field == field
    assert not api.calls


async def test_the_emulator_delivers_to_each_member_under_one_message_id():
    emulator = Emulator()
    async with emulator.client() as client:
        result = await client.send_room_members_message("r1", ["a", "b", "c"], HI)
    assert len(set(result.message_ids.values())) == 1
    assert [(d.recipient, d.target, d.chat_type) for d in emulator.deliveries] == [
        ("a", "r1", "chatroom"),
        ("b", "r1", "chatroom"),
        ("c", "r1", "chatroom"),
    ]
