"""Recall, delete conversation and the two imports, from the reference's examples."""

from __future__ import annotations

import httpx
import pytest

from agora_chat_async import (
    ImageBody,
    ImageSize,
    ImportedMessage,
    OutcomeUnknownError,
    RecallResult,
    TextBody,
    UnexpectedResponseError,
    ValidationError,
)

from .conftest import envelope, json_body


async def test_recall_success_from_the_reference(client, api):
    route = api.post("/messages/msg_recall").mock(
        return_value=httpx.Response(
            200,
            json=envelope(
                "/messages/msg_recall",
                {
                    "recalled": "yes",
                    "chattype": "chat",
                    "from": "user1",
                    "to": "user2",
                    "msg_id": "1028442084794698104",
                },
            ),
        )
    )
    result = await client.recall_message(
        "1028442084794698104", "user2", "chat", sender="user1", force=True
    )
    assert json_body(route.calls.last.request) == {
        "msg_id": "1028442084794698104",
        "to": "user2",
        "from": "user1",
        "chat_type": "chat",
        "force": True,
    }
    assert result == RecallResult(
        message_id="1028442084794698104",
        recalled=True,
        sender="user1",
        to="user2",
        chat_type="chat",
    )


@pytest.mark.parametrize(
    "reason", ["not_found msg", "exceed recall time limit", "can't find msg to", "internal error"]
)
async def test_recall_refusals_from_the_reference(client, api, reason):
    api.post("/messages/msg_recall").mock(
        return_value=httpx.Response(
            200, json={"msgs": [{"msg_id": "673296835082717140", "recalled": reason}]}
        )
    )
    result = await client.recall_message("673296835082717140", "user2", "chat")
    assert not result.recalled
    assert result.reason == reason


async def test_recall_refusal_nested_in_data(client, api):
    api.post("/messages/msg_recall").mock(
        return_value=httpx.Response(
            200,
            json=envelope(
                "/messages/msg_recall", {"msgs": [{"msg_id": "1", "recalled": "not_found msg"}]}
            ),
        )
    )
    result = await client.recall_message("1", "g1", "groupchat")
    assert (result.recalled, result.reason) == (False, "not_found msg")


async def test_recall_without_a_verdict_is_unknown(client, api):
    api.post("/messages/msg_recall").mock(return_value=httpx.Response(200, json={"data": {}}))
    with pytest.raises(OutcomeUnknownError, match="recalled"):
        await client.recall_message("1", "u", "chat")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "u", "chat"), "message_id"),
        (("1", "", "chat"), "to"),
        (("1", "u", "private"), "chat_type"),
    ],
)
async def test_recall_validation(client, args, field):
    with pytest.raises(ValidationError) as caught:
        await client.recall_message(*args)
    assert caught.value.field == field


async def test_delete_conversation_from_the_reference(client, api):
    route = api.delete("/users/u1/user_channel").mock(
        return_value=httpx.Response(
            200,
            json=envelope("/users/user_channel", {"result": "ok"}, action="delete", entities=[]),
        )
    )
    await client.delete_conversation("u1", "u2", "chat", delete_roam=True)
    assert json_body(route.calls.last.request) == {
        "channel": "u2",
        "type": "chat",
        "delete_roam": True,
    }


async def test_delete_conversation_quotes_the_username(client, api):
    route = api.delete("/users/a%2Fb/user_channel").mock(
        return_value=httpx.Response(200, json={"data": {"result": "ok"}})
    )
    await client.delete_conversation("a/b", "g1", "groupchat", delete_roam=False)
    assert json_body(route.calls.last.request)["delete_roam"] is False


async def test_delete_conversation_without_ok_raises(client, api):
    api.delete("/users/u1/user_channel").mock(
        return_value=httpx.Response(200, json={"data": {"result": "failed"}})
    )
    with pytest.raises(UnexpectedResponseError, match="result 'ok'"):
        await client.delete_conversation("u1", "u2", "chat")


async def test_delete_conversation_refuses_rooms(client):
    with pytest.raises(ValidationError, match="chat_type"):
        await client.delete_conversation("u1", "r1", "chatroom")


IMPORT_RESPONSE = {
    "path": "/messages/users/import",
    "uri": "https://XXXX/XXXX/XXXX/messages/users/import",
    "timestamp": 1638440544078,
    "organization": "XXXX",
    "application": "c3624975-XXXX-XXXX-9da2-ee91ed4c5a76",
    "entities": [],
    "action": "post",
    "data": {"msg_id": "10212123848595"},
    "duration": 3,
    "applicationName": "XXXX",
}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("import_user_message", "/messages/users/import"),
        ("import_group_message", "/messages/chatgroups/import"),
    ],
)
async def test_import_text_from_the_reference(client, api, method, path):
    route = api.post(path).mock(return_value=httpx.Response(200, json=IMPORT_RESPONSE))
    imported = await getattr(client, method)(
        "username1",
        "username2",
        TextBody(msg="import message."),
        is_ack_read=True,
        msg_timestamp=1656906628428,
    )
    assert imported == ImportedMessage("10212123848595")
    assert json_body(route.calls.last.request) == {
        "target": "username2",
        "type": "txt",
        "body": {"msg": "import message."},
        "from": "username1",
        "is_ack_read": True,
        "msg_timestamp": 1656906628428,
    }


async def test_import_image_from_the_reference(client, api):
    route = api.post("/messages/users/import").mock(
        return_value=httpx.Response(200, json=IMPORT_RESPONSE)
    )
    await client.import_user_message(
        "username1",
        "username2",
        ImageBody(
            url="<YourImageUrl>",
            filename="<ImageFileName>",
            size=ImageSize(width=1080, height=1920),
        ),
        is_ack_read=True,
        msg_timestamp=1656906628428,
        need_download=True,
    )
    assert json_body(route.calls.last.request) == {
        "target": "username2",
        "type": "img",
        "body": {
            "url": "<YourImageUrl>",
            "filename": "<ImageFileName>",
            "size": {"width": 1080, "height": 1920},
        },
        "from": "username1",
        "is_ack_read": True,
        "msg_timestamp": 1656906628428,
        "need_download": True,
    }


async def test_import_timeout_is_an_unknown_outcome(client, api):
    api.post("/messages/users/import").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknownError):
        await client.import_user_message("a", "b", TextBody(msg="m"))


async def test_import_without_msg_id_is_an_unknown_outcome(client, api):
    api.post("/messages/chatgroups/import").mock(
        return_value=httpx.Response(200, json={"data": {}})
    )
    with pytest.raises(OutcomeUnknownError, match="msg_id"):
        await client.import_group_message("a", "g", TextBody(msg="m"))


async def test_import_validation(client):
    with pytest.raises(ValidationError, match="sender"):
        await client.import_user_message("", "b", TextBody(msg="m"))


async def test_a_timeout_with_your_own_http_client_is_refused_not_ignored():
    import httpx

    from agora_chat_async import AgoraChatClient, StaticToken, ValidationError

    async with httpx.AsyncClient() as http:
        with pytest.raises(ValidationError, match=r"^timeout: .*httpx\.AsyncClient\(timeout="):
            AgoraChatClient(
                "https://a1.easemob.com",
                "o",
                "a",
                auth=StaticToken("t"),
                http_client=http,
                timeout=5,
            )
        client = AgoraChatClient(
            "https://a1.easemob.com", "o", "a", auth=StaticToken("t"), http_client=http
        )
        await client.aclose()
