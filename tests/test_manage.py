"""Edits, batch recalls, roaming deletions and offline status (``_manage.py``): validation,
the documented refusals, and the emulator's side of each."""

from __future__ import annotations

import httpx
import pytest

from agora_chat_async import (
    CmdBody,
    ConflictError,
    CustomBody,
    EditLimitError,
    FeatureNotEnabledError,
    NotFoundError,
    Recall,
    TextBody,
    ValidationError,
)
from agora_chat_async.testing import Emulator, RoamingDeletion

from .conftest import envelope

HI = TextBody(msg="hi")


@pytest.mark.parametrize(
    ("status", "error", "description", "raised"),
    [
        (
            403,
            "message_rewrite_error",
            "The message has reached its edit limit and cannot be modified further.",
            EditLimitError,
        ),
        (
            403,
            "message_rewrite_error",
            "The rewrite message feature is not open.",
            FeatureNotEnabledError,
        ),
        (
            409,
            "concurrent_operation_error",
            "The message has been edited by another.",
            ConflictError,
        ),
        (
            404,
            "MessageUnavailableException",
            "The message is unavailable or has expired.",
            NotFoundError,
        ),
    ],
)
async def test_the_edit_refusals_of_the_page(client, api, status, error, description, raised):
    api.put("/messages/rewrite/123").mock(
        return_value=httpx.Response(status, json={"error": error, "error_description": description})
    )
    with pytest.raises(raised):
        await client.edit_message("123", HI)
    assert api.calls.call_count == 1


async def test_a_roaming_refusal_for_an_app_without_roaming(client, api):
    api.post("/rest/message/roaming/user/u1/delete/all").mock(
        return_value=httpx.Response(
            400,
            json={
                "error": "service open exception",
                "error_description": "this appKey not open message roaming",
            },
        )
    )
    with pytest.raises(FeatureNotEnabledError):
        await client.delete_all_roaming_messages("u1")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.edit_message("12a", HI), "message_id"),
        (lambda c: c.edit_message("12", CmdBody(action="x")), "new"),
        (lambda c: c.edit_message("12", "cmd"), "new"),
        (lambda c: c.edit_message("12", "gif", ext={"a": 1}), "new"),
        (lambda c: c.edit_message("12", "img"), "ext"),
        (lambda c: c.recall_messages([]), "recalls"),
        (lambda c: c.recall_messages(["1"]), "recalls[0]"),
        (
            lambda c: c.recall_messages([Recall(message_id="1", to="a", chat_type="chat")] * 2),
            "recalls[1]",
        ),
        (
            lambda c: c.recall_messages([Recall(message_id="1", to="a", chat_type="room")]),  # type: ignore[arg-type]
            "recalls[0].chat_type",
        ),
        (lambda c: c.delete_roaming_messages("u", "p", [], chat_type="chat"), "message_ids"),
        (lambda c: c.delete_roaming_messages("u", "p", ["1"], chat_type="chatroom"), "chat_type"),
        (lambda c: c.delete_roaming_messages_before("u", "p", -1, chat_type="chat"), "before"),
        (lambda c: c.delete_all_roaming_messages(""), "user"),
        (lambda c: c.get_offline_message_status("u", ""), "message_id"),
    ],
)
async def test_arguments_are_checked_before_sending(client, api, call, field):
    with pytest.raises(ValidationError) as caught:
        await call(client)
    assert caught.value.field == field
    assert not api.calls


async def test_100_recalls_go_30_a_request(client, api):
    sizes = []

    def answer(request: httpx.Request) -> httpx.Response:
        import json

        msgs = json.loads(request.content)["msgs"]
        sizes.append(len(msgs))
        data = [{"recalled": "yes", "msg_id": m["msg_id"], "to": m["to"]} for m in msgs]
        return httpx.Response(200, json=envelope("/messages/batch_recall", data))

    api.post("/messages/batch_recall").mock(side_effect=answer)
    recalls = [Recall(message_id=str(i), to="u", chat_type="chat") for i in range(100)]
    result = await client.recall_messages(recalls, extension_info="why")
    assert sizes == [30, 30, 30, 10]
    assert len(result.recalled) == 100


async def test_120_roaming_ids_go_50_a_request(client, api):
    route = api.delete(url__regex=r"/rest/message/roaming/group/user/u1\?").mock(
        return_value=httpx.Response(200, json={"requestStatusCode": "ok", "timestamp": 1})
    )
    await client.delete_roaming_messages(
        "u1", "g1", [str(i) for i in range(120)], chat_type="groupchat"
    )
    lists = [call.request.url.params["msgIdList"].split(",") for call in route.calls]
    assert [len(ids) for ids in lists] == [50, 50, 20]
    assert "isNotify" not in route.calls.last.request.url.params


async def test_the_emulator_keeps_each_messages_edit_history_and_its_limit():
    emulator = Emulator()
    async with emulator.client() as client:
        sent = await client.send_user_message("alice", HI)
        custom = await client.send_user_message(
            "alice", CustomBody(custom_event="e", custom_exts={"a": "1"})
        )
        message_id = sent.message_ids["alice"]
        for index in range(10):
            await client.edit_message(message_id, TextBody(msg=f"v{index}"), editor="bob")
        with pytest.raises(EditLimitError):
            await client.edit_message(message_id, TextBody(msg="v10"))
        with pytest.raises(ValidationError):
            await client.edit_message(message_id, "cmd")
        from agora_chat_async import BadRequestError

        with pytest.raises(BadRequestError):  # a text message edited as a custom one
            await client.edit_message(message_id, CustomBody(custom_event="e"))
        await client.edit_message(
            custom.message_ids["alice"], CustomBody(custom_event="f"), ext={"x": 1}, merge_ext=False
        )
        with pytest.raises(NotFoundError):
            await client.edit_message("1", HI)
    history = emulator.edits[message_id]
    assert [edit.new_msg["msg"] for edit in history] == [f"v{i}" for i in range(10)]
    assert {edit.user for edit in history} == {"bob"}
    (edit,) = emulator.edits[custom.message_ids["alice"]]
    assert (edit.new_msg, edit.new_ext, edit.merge_ext) == (
        {"type": "custom", "customEvent": "f"},
        {"x": 1},
        False,
    )


async def test_the_emulator_recalls_in_batches_and_says_why_not():
    emulator = Emulator()
    async with emulator.client() as client:
        sent = await client.send_user_message(["a", "b"], HI)
        result = await client.recall_messages(
            [
                Recall(message_id=sent.message_ids["a"], to="a", chat_type="chat"),
                Recall(message_id=sent.message_ids["b"], to="someone", chat_type="chat"),
                Recall(message_id="42", to="a", chat_type="chat"),
            ]
        )
    assert result.recalled == [sent.message_ids["a"]]
    assert result.results[sent.message_ids["b"]].reason == "can't find msg to"
    assert result.results["42"].reason == "not_found msg"
    assert emulator.recalled == {sent.message_ids["a"]}


async def test_the_emulator_records_roaming_deletions_and_refuses_without_the_feature():
    emulator = Emulator()
    async with emulator.client() as client:
        await client.delete_roaming_messages("u1", "u2", ["1", "2"], chat_type="chat")
        await client.delete_roaming_messages_before(
            "u1", "r1", 1659014868000, chat_type="chatroom", notify=True
        )
        await client.delete_all_roaming_messages("u1")
    assert emulator.roaming_deletions == [
        RoamingDeletion(
            user="u1", how="ids", conversation="u2", chat="chat", message_ids=("1", "2")
        ),
        RoamingDeletion(
            user="u1",
            how="before",
            conversation="r1",
            chat="group",
            before=1659014868000,
            notify=True,
        ),
        RoamingDeletion(user="u1", how="all"),
    ]
    without = Emulator(features=("broadcasts",))
    async with without.client() as client:
        with pytest.raises(FeatureNotEnabledError):
            await client.delete_all_roaming_messages("u1")
        with pytest.raises(FeatureNotEnabledError):
            await client.edit_message("1", HI)


async def test_the_emulator_counts_offline_messages_of_offline_users():
    emulator = Emulator(online_users={"bob"})
    async with emulator.client() as client:
        sent = await client.send_user_message(["alice", "bob"], HI)
        await client.send_user_message("alice", TextBody(msg="again"))
        assert await client.get_offline_message_count("alice") == 2
        assert await client.get_offline_message_count("bob") == 0
        alice, bob = sent.message_ids["alice"], sent.message_ids["bob"]
        assert await client.get_offline_message_status("alice", alice) == "undelivered"
        assert await client.get_offline_message_status("bob", bob) == "delivered"
        emulator.online_users.add("alice")  # alice comes online: her messages arrive
        assert await client.get_offline_message_count("alice") == 0
        assert await client.get_offline_message_status("alice", alice) == "delivered"
