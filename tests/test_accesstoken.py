import base64
import zlib

import pytest

from agora_chat_async import ValidationError
from agora_chat_async._accesstoken import build_chat_app_token

APP_ID = "970CA35de60c44645bbae8a215061b33"
CERTIFICATE = "5CFd2fd1755d40ecb72977518be15d3b"
VECTOR = (
    "007eJxTYNDNaz3snC8huEfHWdz6s98qltq4zqy9fl99Uh0FDvy6F6DAYGlu4OxobJqSamaQbGJiZmKalJSYapFoZGhq"
    "YGaYZGzs/kWAIYKJgYGRAYRZgZgJzGdgAACt8hhr"
)


def test_reproduces_the_published_test_vector():
    token = build_chat_app_token(APP_ID, CERTIFICATE, expire=600, issue_ts=1111111, salt=1)
    assert token == VECTOR


def test_token_carries_the_chat_service_with_the_app_privilege():
    token = build_chat_app_token(APP_ID, CERTIFICATE, expire=3600, issue_ts=1700000000, salt=42)
    raw = zlib.decompress(base64.b64decode(token[3:]))
    # signature (2 + 32), app id (2 + 32), issue_ts, expire, salt, service count
    offset = 34 + 34
    assert int.from_bytes(raw[offset : offset + 4], "little") == 1700000000
    assert int.from_bytes(raw[offset + 4 : offset + 8], "little") == 3600
    assert int.from_bytes(raw[offset + 8 : offset + 12], "little") == 42
    service = raw[offset + 14 :]
    assert service[:2] == (5).to_bytes(2, "little")  # chat
    assert service[2:4] == (1).to_bytes(2, "little")  # one privilege
    assert service[4:6] == (2).to_bytes(2, "little")  # the app privilege
    assert service[6:10] == (3600).to_bytes(4, "little")


def test_default_issue_time_and_salt_make_distinct_tokens():
    first = build_chat_app_token(APP_ID, CERTIFICATE, expire=60)
    second = build_chat_app_token(APP_ID, CERTIFICATE, expire=60)
    assert first.startswith("007")
    assert first != second


@pytest.mark.parametrize(
    ("app_id", "certificate", "field"),
    [
        ("short", CERTIFICATE, "app_id"),
        (APP_ID, "z" * 32, "app_certificate"),
        (APP_ID, 123, "app_certificate"),
    ],
)
def test_malformed_credentials_are_refused_without_echoing_them(app_id, certificate, field):
    with pytest.raises(ValidationError) as caught:
        build_chat_app_token(app_id, certificate, expire=60)
    assert caught.value.field == field
    assert str(certificate) not in str(caught.value)


@pytest.mark.parametrize("expire", [-1, 2**32, True, 1.5])
def test_out_of_range_integers_are_refused(expire):
    with pytest.raises(ValidationError, match="expire"):
        build_chat_app_token(APP_ID, CERTIFICATE, expire=expire)


def test_parse_reads_back_what_was_built():
    from agora_chat_async.testing._tokens import parse_token

    parsed = parse_token(VECTOR, CERTIFICATE)
    assert parsed.app_id == APP_ID
    assert (parsed.issue_ts, parsed.expire, parsed.salt) == (1111111, 600, 1)
    assert parsed.services == {5: {2: 600}}


@pytest.mark.parametrize(
    "token",
    ["006abc", "007!!!", "007" + base64.b64encode(zlib.compress(b"\x02\x00ab")).decode(), VECTOR],
)
def test_parse_refuses_malformed_or_foreign_tokens(token):
    from agora_chat_async.testing._tokens import parse_token

    with pytest.raises(ValueError, match="token"):
        parse_token(token, "0" * 32)  # VECTOR is valid, but not for this certificate
