"""Bodies validate when they are built; results account for every recipient."""

import pytest

from agora_chat_async import (
    AudioBody,
    CmdBody,
    CustomBody,
    FileBody,
    HistoryFile,
    ImageBody,
    ImageSize,
    LocationBody,
    OutcomeUnknownError,
    SendFailedError,
    SendResult,
    ServerError,
    TextBody,
    UploadedFile,
    ValidationError,
    VideoBody,
)


@pytest.mark.parametrize("event", ["gift_1", "a", "A-b_c/d.e", "x" * 32])
def test_custom_event_accepts_the_documented_pattern(event):
    assert CustomBody(custom_event=event).custom_event == event


@pytest.mark.parametrize("event", ["", "x" * 33, "has space", "emoji😀", "semi;colon", 5])
def test_custom_event_outside_the_pattern_names_the_field(event):
    with pytest.raises(ValidationError) as caught:
        CustomBody(custom_event=event)
    assert caught.value.field == "customEvent"


def test_custom_exts_allow_sixteen_string_entries():
    exts = {f"k{i}": str(i) for i in range(16)}
    assert CustomBody(custom_exts=exts).custom_exts == exts


def test_custom_exts_refuse_a_seventeenth_entry():
    with pytest.raises(ValidationError, match="at most 16"):
        CustomBody(custom_exts={f"k{i}": "v" for i in range(17)})


@pytest.mark.parametrize("exts", [{"k": 1}, {1: "v"}, {"k": None}, ["k"]])
def test_custom_exts_refuse_non_string_values(exts):
    with pytest.raises(ValidationError, match="customExts"):
        CustomBody(custom_exts=exts)


def test_custom_exts_are_copied_so_later_mutation_does_not_leak_in():
    exts = {"a": "1"}
    body = CustomBody(custom_exts=exts)
    exts["b"] = "2"
    assert body.custom_exts == {"a": "1"}


def test_location_coordinates_become_decimal_strings():
    body = LocationBody(lat=39.966, lng="116.322", addr="Beijing")
    assert (body.lat, body.lng) == ("39.966", "116.322")


@pytest.mark.parametrize("lat", ["north", True, None])
def test_location_refuses_non_numbers(lat):
    with pytest.raises(ValidationError, match="lat"):
        LocationBody(lat=lat, lng=1, addr="x")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ImageBody(url="", filename="a.jpg", size=ImageSize(1, 1)), "url"),
        (lambda: ImageBody(url="u", filename="a.jpg", size=(1, 2)), "size"),
        (lambda: ImageBody(url="u", filename="a.jpg", size=None), "size"),
        (lambda: AudioBody(url="u", filename="a.amr", length=-1), "length"),
        (lambda: AudioBody(url="u", filename="a.amr", length=True), "length"),
        (lambda: VideoBody(url="u", length=1, file_length="big"), "file_length"),
        (lambda: FileBody(url="u", filename=""), "filename"),
        (lambda: ImageSize(width=-1, height=1), "width"),
        (lambda: TextBody(msg=None), "msg"),
        (lambda: CmdBody(action=1), "action"),
        (lambda: LocationBody(lat=1, lng=2, addr=None), "addr"),
    ],
)
def test_bodies_name_the_bad_field(build, field):
    with pytest.raises(ValidationError) as caught:
        build()
    assert caught.value.field == field


def test_wire_type_of_each_body():
    assert [
        cls.type
        for cls in (
            TextBody,
            ImageBody,
            AudioBody,
            VideoBody,
            FileBody,
            LocationBody,
            CmdBody,
            CustomBody,
        )
    ] == ["txt", "img", "audio", "video", "file", "loc", "cmd", "custom"]


def test_secrets_stay_out_of_reprs():
    secret = "VfEpSmSvEeS7yU8dwa9rAQc-DIL2HhmpujTNfSTsrDt6eNb_"
    reprs = [
        repr(ImageBody(url="u", filename="f", size=ImageSize(1, 1), secret=secret)),
        repr(AudioBody(url="u", filename="f", length=1, secret=secret)),
        repr(VideoBody(url="u", length=1, file_length=1, secret=secret, thumb_secret=secret)),
        repr(FileBody(url="u", filename="f", secret=secret)),
        repr(UploadedFile(uuid="x", url="u", share_secret=secret)),
        repr(HistoryFile.from_url(f"https://oss/h.gz?Expires=1543316122&Signature={secret}")),
    ]
    for text in reprs:
        assert secret not in text


def test_history_file_reads_its_expiry_from_the_signed_url():
    link = HistoryFile.from_url("http://XXXX?Expires=1543316122&OSSAccessKeyId=XXXX&Signature=XXXX")
    assert link.expires_at is not None
    assert int(link.expires_at.timestamp()) == 1543316122
    assert HistoryFile.from_url("https://x/y").expires_at is None


def test_send_result_accounts_and_raises():
    unknown = OutcomeUnknownError("read timeout")
    failed = ServerError(status_code=503)
    result = SendResult(message_ids={"a": "1"}, failed={"b": failed}, unknown={"c": unknown})
    assert not result.ok
    assert result.recipients == 3
    with pytest.raises(SendFailedError) as caught:
        result.raise_for_failures()
    assert caught.value.result is result
    assert "1 recipient(s) failed and 1 have an unknown outcome (1 delivered)" in str(caught.value)
    ok = SendResult(message_ids={"a": "1"})
    assert ok.raise_for_failures() is ok


def test_send_results_merge():
    merged = SendResult(message_ids={"a": "1"}).merge(
        SendResult(unknown={"b": OutcomeUnknownError("x")})
    )
    assert set(merged.message_ids) == {"a"}
    assert set(merged.unknown) == {"b"}
