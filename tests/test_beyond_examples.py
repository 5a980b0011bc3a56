"""Every endpoint of the rest of the message API against respx mocks built from its page's own
request and response examples (``../shared/reference/beyond-seeds/``), each used verbatim:
the request the client sends equals the page's, and the page's answer is read.

The examples are copied here so that the tests run without the reference beside the
project; ``test_the_examples_are_the_pages_own`` checks each copy against its page when
the reference is there (CI has it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from agora_chat_async import (
    BatchRecallResult,
    Broadcast,
    CustomBody,
    ImageBody,
    ImageSize,
    Recall,
    RecallResult,
    SendResult,
    TextBody,
)

from .conftest import json_body

REFERENCE = Path(__file__).parent.parent.parent / "shared" / "reference" / "beyond-seeds"

# -- the pages' examples, verbatim --------------------------------------------------------------

ALL_USERS_TEXT = {
    "target_type": "users",
    "msg": {"type": "txt", "msg": "send broadcast to all users"},
    "from": "admin",
    "ext": {"extKey": "extValue"},
}
ALL_USERS_IMAGE = {
    "target_type": "users",
    "msg": {
        "type": "img",
        "filename": "testimg.jpg",
        "secret": "VfXXXXNb_",
        "url": "https://XXXX/XXXX/XXXX/chatfiles/55f12940-XXXX-XXXX-8a5b-ff2336f03252",
        "size": {"width": 480, "height": 720},
    },
    "from": "admin",
    "ext": {"extKey": "extValue"},
}
ALL_USERS_ANSWER = {
    "path": "/messages/broadcast",
    "uri": "https://XXXX/XXXX/XXXX/messages/broadcast",
    "timestamp": 1745565192019,
    "organization": "XXXX",
    "application": "5371aaa4-4a53-XXXX-XXXX-2bc6b3e401d7",
    "action": "post",
    "data": {"id": 1365344904091349007},
    "duration": 0,
    "applicationName": "XXXX",
}
ONLINE_TEXT = {
    "msg": {"type": "txt", "msg": "send broadcast to all online users"},
    "from": "admin",
    "ext": {"extKey": "extValue"},
}
ONLINE_ANSWER = {
    "path": "/messages/users/broadcast",
    "uri": "https://XXXX/XXXX/XXXX/messages/users/broadcast",
    "timestamp": 1699944653964,
    "organization": "XXXX",
    "application": "331d42e6-ad85-XXXX-XXXX-d1fb6fef9f12",
    "action": "post",
    "data": {"id": 1173998498812376874},
    "duration": 1,
    "applicationName": "XXXX",
}
ROOMS_TEXT = {
    "msg": {"type": "txt", "msg": "send broadcast to all chatroom"},
    "from": "admin",
    "ext": {"extKey": "extValue"},
    "chatroom_msg_level": "low",
}
ROOMS_ANSWER = {
    "path": "/messages/chatrooms/broadcast",
    "uri": "https://XXXX/XXXX/XXXX/messages/chatrooms/broadcast",
    "timestamp": 1699944653964,
    "organization": "easemob-demo",
    "application": "331d42e6-ad85-460f-b6b0-d1fb6fef9f12",
    "action": "post",
    "data": {"id": 1173998498812376874},
    "duration": 1,
    "applicationName": "wang",
}
GROUP_MEMBERS = {
    "from": "user1",
    "to": ["184524748161025"],
    "type": "txt",
    "body": {"msg": "testmessages"},
    "ext": {"em_ignore_notification": True},
    "users": ["user2", "user3"],
}
GROUP_MEMBERS_ANSWER = {
    "path": "/messages/chatgroups",
    "uri": "https://XXXX/XXXX/XXXX/messages/chatgroups",
    "timestamp": 1657254052191,
    "organization": "XXXX",
    "application": "e82bcc5f-XXXX-XXXX-a7c1-92de917ea2b0",
    "action": "post",
    "data": {"184524748161025": "1029544257947437432"},
    "duration": 0,
    "applicationName": "XXXX",
}
ROOM_MEMBERS = {
    "from": "user1",
    "to": ["185145305923585"],
    "type": "txt",
    "body": {"msg": "testmessages"},
    "users": ["user2", "user3"],
}
ROOM_MEMBERS_ANSWER = {
    "path": "/messages/chatrooms",
    "uri": "https://XXXX/XXXX/XXXX/messages/chatrooms",
    "timestamp": 1657254052191,
    "organization": "XXXX",
    "application": "e82bcc5f-XXXX-XXXX-a7c1-92de917ea2b0",
    "action": "post",
    "data": {"185145305923585": "1029545553039460728"},
    "duration": 0,
    "applicationName": "XXXX",
}
REWRITE_TEXT = {
    "user": "user1",
    "new_msg": {"type": "txt", "msg": "update message content"},
    "new_ext": {"key1": "value1", "key2": "value2"},
    "is_combine_ext": True,
}
REWRITE_CUSTOM = {
    "user": "user1",
    "new_msg": {
        "type": "custom",
        "customEvent": "custom_event",
        "customExts": {"ext_key1": "ext_value1"},
    },
    "new_ext": {"key1": "value1", "key2": "value2"},
    "is_combine_ext": True,
}
REWRITE_IMAGE = {
    "user": "user1",
    "new_msg": {"type": "image"},
    "new_ext": {"key1": "value1", "key2": "value2"},
    "is_combine_ext": True,
}
REWRITE_ANSWER = {
    "path": "/messages/rewrite/1235807318835202004",
    "uri": "https://XXXX/XXXX/XXXX/messages/rewrite/1235807318835202004",
    "timestamp": 1705372388118,
    "organization": "XXXX",
    "application": "ff678832-XXXX-XXXX-8130-58ac38cb6c15",
    "action": "put",
    "data": "success",
    "duration": 49,
    "applicationName": "XXXX",
}
BATCH_RECALL = {
    "msgs": [
        {
            "msg_id": "7126XXXX2581",
            "to": "d95XXXX81c64",
            "from": "18XXXXebf262",
            "chat_type": "chatroom",
            "force": False,
            "sync_device": False,
        },
        {
            "msg_id": "10436XXXX4564398104",
            "to": "d9571XXXXc64",
            "from": "18e4XXXXf262",
            "chat_type": "chat",
            "force": False,
            "sync_device": False,
        },
    ]
}
BATCH_RECALL_ANSWER = {
    "path": "/messages/batch_recall",
    "uri": "https://XXXX/XXXX/XXXX/messages/batch_recall",
    "timestamp": 1657529588473,
    "organization": "XXXX",
    "application": "09ebbf8b-XXXX-XXXX-XXXX-d47c3b38e434",
    "action": "post",
    "data": [
        {
            "recalled": "yes",
            "chattype": "chat",
            "from": "XXXX",
            "to": "XXXX",
            "msg_id": "1028442XXXX94698104",
        },
        {
            "recalled": "yes",
            "chattype": "chat",
            "from": "XXXX",
            "to": "XXXX",
            "msg_id": "104367XXXX564398104",
        },
    ],
    "duration": 8,
    "applicationName": "XXXX",
}
ROAMING_ANSWER = {"requestStatusCode": "ok", "timestamp": 1710309184114}
OFFLINE_COUNT_ANSWER = {
    "action": "get",
    "uri": "http://XXXX/XXXX/XXXX/users/user1/offline_msg_count",
    "entities": [],
    "data": {"user1": 0},
    "timestamp": 1542601518137,
    "duration": 3,
    "count": 0,
}
OFFLINE_STATUS_ANSWER = {
    "action": "get",
    "uri": "http://XXXX/XXXX/XXXX/users/user1/offline_msg_status/123",
    "entities": [],
    "data": {"123": "delivered"},
    "timestamp": 1542601830084,
    "duration": 5,
    "count": 0,
}
#: The example URLs' paths and queries (``XXXX`` in place of ids, as the pages have them).
ROAMING_URLS = {
    "message_delete_roaming.md": [
        "/rest/message/roaming/chat/user/XXXX?userId=XXXX&msgIdList=XXXX&isNotify=false",
        "/rest/message/roaming/user/XXXX/delete/all",
        "/rest/message/roaming/chat/user/XXXX/time?userId=XXXX&delTime=1659014868000&isNotify=false",
        "/rest/message/roaming/group/user/XXXX/time?groupId=XXXX&delTime=1659014868000&isNotify=false",
    ]
}

#: page -> the JSON examples taken from it.
EXAMPLES: dict[str, list[Any]] = {
    "broadcast_to_all_users.md": [ALL_USERS_TEXT, ALL_USERS_IMAGE, ALL_USERS_ANSWER],
    "broadcast_to_online_users.md": [ONLINE_TEXT, ONLINE_ANSWER],
    "broadcast_to_chatrooms.md": [ROOMS_TEXT, ROOMS_ANSWER],
    "message_group.md": [GROUP_MEMBERS, GROUP_MEMBERS_ANSWER],
    "message_chatroom.md": [ROOM_MEMBERS, ROOM_MEMBERS_ANSWER],
    "message_modify.md": [REWRITE_TEXT, REWRITE_CUSTOM, REWRITE_IMAGE, REWRITE_ANSWER],
    "message_recall_batch.md": [BATCH_RECALL, BATCH_RECALL_ANSWER],
    "message_delete_roaming.md": [ROAMING_ANSWER],
    "offline_messages.md": [OFFLINE_COUNT_ANSWER, OFFLINE_STATUS_ANSWER],
}


def _page_json(text: str) -> list[Any]:
    """Every JSON document of a page: ``-d '...'`` payloads and ```json blocks."""
    found = []
    for block in re.findall(r"-d '(\{.*?\})'", text, re.S) + re.findall(
        r"```json\n(.*?)```", text, re.S
    ):
        try:
            found.append(json.loads(block))
        except json.JSONDecodeError:
            continue  # one page's example has a trailing comma
    return found


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the reference is not beside the project")
@pytest.mark.parametrize("page", sorted(EXAMPLES))
def test_the_examples_are_the_pages_own(page):
    text = (REFERENCE / page).read_text("utf-8")
    documents = _page_json(text)
    for example in EXAMPLES[page]:
        assert example in documents, (page, example)
    for url in ROAMING_URLS.get(page, ()):
        assert url in text, url


# -- broadcasts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "path", "example", "answer", "body", "level"),
    [
        (
            "users",
            "/messages/broadcast",
            ALL_USERS_TEXT,
            ALL_USERS_ANSWER,
            TextBody(msg="send broadcast to all users"),
            None,
        ),
        (
            "users",
            "/messages/broadcast",
            ALL_USERS_IMAGE,
            ALL_USERS_ANSWER,
            ImageBody(
                filename="testimg.jpg",
                secret="VfXXXXNb_",
                url="https://XXXX/XXXX/XXXX/chatfiles/55f12940-XXXX-XXXX-8a5b-ff2336f03252",
                size=ImageSize(width=480, height=720),
            ),
            None,
        ),
        (
            "online_users",
            "/messages/users/broadcast",
            ONLINE_TEXT,
            ONLINE_ANSWER,
            TextBody(msg="send broadcast to all online users"),
            None,
        ),
        (
            "rooms",
            "/messages/chatrooms/broadcast",
            ROOMS_TEXT,
            ROOMS_ANSWER,
            TextBody(msg="send broadcast to all chatroom"),
            "low",
        ),
    ],
)
async def test_broadcasts_from_the_pages(client, api, to, path, example, answer, body, level):
    route = api.post(path).mock(return_value=httpx.Response(200, json=answer))
    sent = await client.broadcast(to, body, sender="admin", ext={"extKey": "extValue"}, level=level)
    assert json_body(route.calls.last.request) == example
    assert sent == Broadcast(id=str(answer["data"]["id"]), to=to)


# -- messages to selected members ---------------------------------------------------------------


async def test_a_message_to_group_members_from_the_page(client, api):
    route = api.post("/messages/chatgroups/users").mock(
        return_value=httpx.Response(200, json=GROUP_MEMBERS_ANSWER)
    )
    result = await client.send_group_members_message(
        "184524748161025",
        ["user2", "user3"],
        TextBody(msg="testmessages"),
        sender="user1",
        ext={"em_ignore_notification": True},
    )
    assert json_body(route.calls.last.request) == GROUP_MEMBERS
    assert result == SendResult(
        message_ids={"user2": "1029544257947437432", "user3": "1029544257947437432"}
    )


async def test_a_message_to_room_members_from_the_page(client, api):
    # The page's example posts to /messages/chatrooms, its heading names
    # /messages/chatrooms/users: the members' endpoint (the body has ``users``).
    route = api.post("/messages/chatrooms/users").mock(
        return_value=httpx.Response(200, json=ROOM_MEMBERS_ANSWER)
    )
    result = await client.send_room_members_message(
        "185145305923585", ["user2", "user3"], TextBody(msg="testmessages"), sender="user1"
    )
    assert json_body(route.calls.last.request) == ROOM_MEMBERS
    assert result.message_ids == {
        "user2": "1029545553039460728",
        "user3": "1029545553039460728",
    }


# -- edits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "example"),
    [
        (TextBody(msg="update message content"), REWRITE_TEXT),
        (
            CustomBody(custom_event="custom_event", custom_exts={"ext_key1": "ext_value1"}),
            REWRITE_CUSTOM,
        ),
        ("img", REWRITE_IMAGE),
    ],
)
async def test_edits_from_the_page(client, api, new, example):
    route = api.put("/messages/rewrite/1235807318835202004").mock(
        return_value=httpx.Response(200, json=REWRITE_ANSWER)
    )
    await client.edit_message(
        "1235807318835202004",
        new,
        ext={"key1": "value1", "key2": "value2"},
        merge_ext=True,
        editor="user1",
    )
    sent = json_body(route.calls.last.request)
    if new == "img":
        # The page's example writes "image"; its table, and every other page, "img".
        assert sent == {**example, "new_msg": {"type": "img"}}
    else:
        assert sent == example


# -- batch recall -------------------------------------------------------------------------------


async def test_a_batch_recall_from_the_page(client, api):
    route = api.post("/messages/batch_recall").mock(
        return_value=httpx.Response(200, json=BATCH_RECALL_ANSWER)
    )
    result = await client.recall_messages(
        [
            Recall(
                message_id="7126XXXX2581",
                to="d95XXXX81c64",
                sender="18XXXXebf262",
                chat_type="chatroom",
                sync_device=False,
            ),
            Recall(
                message_id="10436XXXX4564398104",
                to="d9571XXXXc64",
                sender="18e4XXXXf262",
                chat_type="chat",
                sync_device=False,
            ),
        ]
    )
    assert json_body(route.calls.last.request) == BATCH_RECALL
    # The page's answer names other messages than its request: neither of those asked
    # about has an outcome, so both are unknown, and nothing is claimed recalled.
    assert isinstance(result, BatchRecallResult)
    assert sorted(result.unknown) == ["10436XXXX4564398104", "7126XXXX2581"]
    assert not result.results


async def test_a_batch_recall_reads_each_outcome_by_id(client, api):
    answer = {**BATCH_RECALL_ANSWER}
    api.post("/messages/batch_recall").mock(return_value=httpx.Response(200, json=answer))
    result = await client.recall_messages(
        [
            Recall(message_id="1028442XXXX94698104", to="XXXX", chat_type="chat"),
            Recall(message_id="104367XXXX564398104", to="XXXX", chat_type="chat"),
        ]
    )
    assert result.recalled == ["1028442XXXX94698104", "104367XXXX564398104"]
    assert result.results["1028442XXXX94698104"] == RecallResult(
        message_id="1028442XXXX94698104",
        recalled=True,
        sender="XXXX",
        to="XXXX",
        chat_type="chat",
    )


# -- roaming deletions and offline status ------------------------------------------------------


async def test_roaming_deletions_from_the_page(client, api):
    routes = [
        api.delete(url__regex=r"/rest/message/roaming/chat/user/XXXX\?").mock(
            return_value=httpx.Response(200, json=ROAMING_ANSWER)
        ),
        api.delete(url__regex=r"/rest/message/roaming/group/user/XXXX\?").mock(
            return_value=httpx.Response(200, json=ROAMING_ANSWER)
        ),
        api.post("/rest/message/roaming/user/XXXX/delete/all").mock(
            return_value=httpx.Response(200, json=ROAMING_ANSWER)
        ),
        api.delete(url__regex=r"/rest/message/roaming/chat/user/XXXX/time").mock(
            return_value=httpx.Response(200, json=ROAMING_ANSWER)
        ),
        api.delete(url__regex=r"/rest/message/roaming/group/user/XXXX/time").mock(
            return_value=httpx.Response(200, json=ROAMING_ANSWER)
        ),
    ]
    await client.delete_roaming_messages("XXXX", "XXXX", ["XXXX"], chat_type="chat", notify=False)
    await client.delete_roaming_messages(
        "XXXX", "XXXX", ["XXXX"], chat_type="groupchat", notify=False
    )
    await client.delete_all_roaming_messages("XXXX")
    await client.delete_roaming_messages_before(
        "XXXX", "XXXX", 1659014868000, chat_type="chat", notify=False
    )
    await client.delete_roaming_messages_before(
        "XXXX", "XXXX", 1659014868000, chat_type="groupchat", notify=False
    )
    sent = [route.calls.last.request.url for route in routes]
    base = "/XXXX/YYYY"
    assert [f"{url.raw_path.decode()}" for url in sent] == [
        f"{base}/rest/message/roaming/chat/user/XXXX?userId=XXXX&msgIdList=XXXX&isNotify=false",
        f"{base}/rest/message/roaming/group/user/XXXX?groupId=XXXX&msgIdList=XXXX&isNotify=false",
        f"{base}/rest/message/roaming/user/XXXX/delete/all",
        f"{base}/rest/message/roaming/chat/user/XXXX/time"
        "?userId=XXXX&delTime=1659014868000&isNotify=false",
        f"{base}/rest/message/roaming/group/user/XXXX/time"
        "?groupId=XXXX&delTime=1659014868000&isNotify=false",
    ]


async def test_offline_count_and_status_from_the_page(client, api):
    api.get("/users/user1/offline_msg_count").mock(
        return_value=httpx.Response(200, json=OFFLINE_COUNT_ANSWER)
    )
    api.get("/users/user1/offline_msg_status/123").mock(
        return_value=httpx.Response(200, json=OFFLINE_STATUS_ANSWER)
    )
    assert await client.get_offline_message_count("user1") == 0
    assert await client.get_offline_message_status("user1", "123") == "delivered"
