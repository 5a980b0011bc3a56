"""Wire names are mapped in one place, and None is never sent."""

import json
import math

import pytest

from agora_chat_async import (
    AudioBody,
    CustomBody,
    HistoryRecord,
    ImageBody,
    ImageSize,
    LocationBody,
    TextBody,
    UnknownBody,
    ValidationError,
    VideoBody,
)
from agora_chat_async._converter import (
    RecallData,
    RecallRequest,
    SendMessageRequest,
    UploadEntity,
    converter,
    dumps,
    encode_json,
    structure_body,
)


def wire(obj):
    return json.loads(dumps(obj))


def test_custom_body_uses_camel_case_wire_names():
    body = CustomBody(custom_event="gift_1", custom_exts={"name": "flower"})
    assert wire(body) == {"customEvent": "gift_1", "customExts": {"name": "flower"}}


def test_sender_travels_as_from_and_none_fields_are_omitted():
    request = SendMessageRequest(
        to=["user2"], type="txt", body=TextBody(msg="testmessages"), sender="user1"
    )
    assert wire(request) == {
        "from": "user1",
        "to": ["user2"],
        "type": "txt",
        "body": {"msg": "testmessages"},
    }


def test_room_level_travels_as_chatroom_msg_level():
    request = SendMessageRequest(
        to=["r"], type="txt", body=TextBody(msg="m"), chatroom_msg_level="high"
    )
    assert wire(request)["chatroom_msg_level"] == "high"


def test_reference_image_example_round_trips():
    body = ImageBody(
        filename="testimg.jpg",
        secret="VfXXXXNb_",
        url="https://XXXX/XXXX/XXXX/chatfiles/55f12940-XXXX-XXXX-8a5b-ff2336f03252",
        size=ImageSize(width=480, height=720),
    )
    assert wire(body) == {
        "filename": "testimg.jpg",
        "secret": "VfXXXXNb_",
        "url": "https://XXXX/XXXX/XXXX/chatfiles/55f12940-XXXX-XXXX-8a5b-ff2336f03252",
        "size": {"width": 480, "height": 720},
    }


def test_audio_uses_length_and_video_uses_thumb():
    audio = AudioBody(url="u", filename="testaudio.amr", length=10, secret="HfXXXXCjM")
    assert wire(audio)["length"] == 10
    video = VideoBody(
        thumb="t", length=0, secret="s", file_length=58103, thumb_secret="ts", url="u"
    )
    assert wire(video) == {
        "url": "u",
        "length": 0,
        "file_length": 58103,
        "thumb": "t",
        "secret": "s",
        "thumb_secret": "ts",
    }


def test_recall_request_matches_the_reference_example():
    request = RecallRequest(
        msg_id="1028442084794698104", to="user2", sender="user1", chat_type="chat", force=True
    )
    assert wire(request) == {
        "msg_id": "1028442084794698104",
        "to": "user2",
        "from": "user1",
        "chat_type": "chat",
        "force": True,
    }


def test_upload_entity_reads_share_secret():
    entity = converter.structure(
        {
            "uuid": "5fd74830-XXXX",
            "type": "chatfile",
            "share-secret": "X9dIOla-EemnXXXXtUZLGyqG9Y-XXXX_ysw27NqTV1_g7Yc",
        },
        UploadEntity,
    )
    assert entity.share_secret == "X9dIOla-EemnXXXXtUZLGyqG9Y-XXXX_ysw27NqTV1_g7Yc"


def test_recall_data_reads_chattype_and_from():
    data = converter.structure(
        {"recalled": "yes", "chattype": "chat", "from": "a", "to": "b", "msg_id": "1"}, RecallData
    )
    assert (data.chat_type, data.sender, data.message_id) == ("chat", "a", "1")


# History bodies, from the reference's examples.
HISTORY_BODIES = [
    ({"msg": "welcome to agora!", "type": "txt"}, TextBody(msg="welcome to agora!")),
    (
        {"addr": "test", "lat": 39.9053, "lng": 116.36302, "type": "loc"},
        LocationBody(lat="39.9053", lng="116.36302", addr="test"),
    ),
    (
        {
            "file_length": 6630,
            "filename": "test1.amr",
            "length": 10,
            "secret": "DRGM8",
            "type": "audio",
            "url": "https://a1.agora.com/x",
        },
        AudioBody(
            url="https://a1.agora.com/x",
            filename="test1.amr",
            length=10,
            secret="DRGM8",
            file_length=6630,
        ),
    ),
    (
        {
            "customExts": {"name": "flower", "size": "16", "price": "100"},
            "customEvent": "gift_1",
            "type": "custom",
        },
        CustomBody(
            custom_event="gift_1", custom_exts={"name": "flower", "size": "16", "price": "100"}
        ),
    ),
    (
        {
            "file_length": 128827,
            "file_name": "test1.jpg",
            "size": {"height": 1325, "width": 746},
            "type": "img",
            "url": "u",
        },
        ImageBody(
            url="u",
            filename="test1.jpg",
            size=ImageSize(width=746, height=1325),
            file_length=128827,
        ),
    ),
]


@pytest.mark.parametrize(("data", "expected"), HISTORY_BODIES)
def test_history_bodies_structure_to_typed_bodies(data, expected):
    assert structure_body(data) == expected


def test_a_body_that_does_not_match_its_type_is_kept_as_unknown():
    assert structure_body({"type": "img", "url": "u"}) == UnknownBody(
        type="img", fields={"url": "u"}
    )


def test_unknown_body_types_are_kept_not_dropped():
    assert structure_body({"type": "combine", "title": "x"}) == UnknownBody(
        type="combine", fields={"title": "x"}
    )


def test_history_record_from_the_reference_example():
    record = converter.structure(
        {
            "msg_id": "5I02W-XX-8278a",
            "timestamp": 1403099033211,
            "direction": "outgoing",
            "to": "XXXX",
            "from": "YYYY",
            "chat_type": "chat",
            "payload": {
                "bodies": [{"msg": "hi", "type": "txt"}],
                "ext": {"key1": "value1"},
                "from": "YYYY",
                "to": "XXXX",
            },
        },
        HistoryRecord,
    )
    assert record.message_id == "5I02W-XX-8278a"
    assert record.sender == "YYYY"
    assert record.timestamp.isoformat() == "2014-06-18T13:43:53.211000+00:00"
    assert record.bodies == (TextBody(msg="hi"),)
    assert record.ext == {"key1": "value1"}
    assert record.direction == "outgoing"


@pytest.mark.parametrize("number", [math.nan, math.inf])
def test_no_request_body_carries_a_number_json_cannot(number):
    # The last line of defence under every field's own check: Python's json writes NaN.
    with pytest.raises(ValidationError, match=r"^request body: Out of range float"):
        encode_json({"x": [number]})
