import json

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agora_chat_async import TextBody, ValidationError
from agora_chat_async._batching import (
    MAX_REQUEST_BYTES,
    Packer,
    SendEncoding,
    encoded_id_size,
    pack_recipients,
)
from agora_chat_async._converter import SendMessageRequest, dumps


def request_size(ids: list[str], body: TextBody) -> int:
    return len(dumps(SendMessageRequest(to=ids, type="txt", body=body)))


def test_encoded_size_counts_quotes_escapes_and_utf8():
    assert encoded_id_size("abc") == 5
    assert encoded_id_size('a"b') == 6
    assert encoded_id_size("a\\b") == 6
    assert encoded_id_size("用户") == 8


@given(st.text(max_size=40))
@example("a\\b")
@example('a"b')
@example("tab\there")
@example("del\x7f")
@example("line\u2028sep")
def test_encoded_size_is_the_length_of_the_json_encoding(recipient):
    assert encoded_id_size(recipient) == len(dumps(recipient))
    assert encoded_id_size(recipient) == len(dumps([recipient])) - 2


@given(
    ids=st.lists(st.text(min_size=1, max_size=30), max_size=30),
    msg=st.text(min_size=1, max_size=50),
    ext=st.none() | st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8)),
)
def test_send_encoding_is_the_converter_encoding_and_the_packer_arithmetic(ids, msg, ext):
    template = SendMessageRequest(
        to=[], type="txt", body=TextBody(msg=msg), ext=ext, chatroom_msg_level="high"
    )
    encoding = SendEncoding(template)
    content = encoding.encode(ids)
    assert content == dumps(attrs.evolve(template, to=ids))
    commas = max(len(ids) - 1, 0)
    assert len(content) == encoding.base_size + sum(map(encoded_id_size, ids)) + commas


def test_send_encoding_refuses_what_cannot_be_sent():
    with pytest.raises(ValidationError, match=r"ext.*JSON-serialisable"):
        SendEncoding(SendMessageRequest(to=[], type="txt", body=TextBody(msg="a"), ext={"x": {1}}))
    with pytest.raises(ValidationError, match="3001 bytes"):
        big = TextBody(msg="x" * (3001 - len('{"msg":""}')))
        SendEncoding(SendMessageRequest(to=[], type="txt", body=big))
    exactly = TextBody(msg="x" * (3000 - len('{"msg":""}')))
    assert SendEncoding(SendMessageRequest(to=[], type="txt", body=exactly)).base_size > 3000


def test_six_hundred_long_ids_do_not_fit_one_request():
    body = TextBody(msg="hello")
    base = request_size([], body)
    ids = [f"user-{index:010d}" for index in range(600)]
    batches = list(pack_recipients(ids, Packer(cap=600, base_size=base)))
    assert len(batches) > 1
    assert [i for batch in batches for i in batch] == ids
    for batch in batches:
        assert request_size(batch, body) <= MAX_REQUEST_BYTES


def test_short_ids_fill_the_count_cap():
    body = TextBody(msg="x")
    ids = [str(index) for index in range(1300)]
    batches = list(pack_recipients(ids, Packer(cap=600, base_size=request_size([], body))))
    assert [len(batch) for batch in batches] == [600, 600, 100]


def test_a_recipient_that_cannot_fit_even_alone_is_refused():
    body = TextBody(msg="x" * 4900)
    with pytest.raises(ValidationError, match=r"to\[1\]"):
        list(pack_recipients(["a", "b" * 200], Packer(cap=600, base_size=request_size([], body))))


@given(
    ids=st.lists(st.text(min_size=1, max_size=64), max_size=300, unique=True),
    cap=st.sampled_from([3, 10, 600]),
    msg=st.text(max_size=2000),
)
def test_every_id_lands_in_exactly_one_batch_in_order_within_cap_and_bytes(ids, cap, msg):
    body = TextBody(msg=msg)
    base = request_size([], body)
    try:
        batches = list(pack_recipients(ids, Packer(cap=cap, base_size=base)))
    except ValidationError:
        assert any(base + encoded_id_size(i) > MAX_REQUEST_BYTES for i in ids)
        return
    assert [i for batch in batches for i in batch] == ids
    for batch in batches:
        assert 1 <= len(batch) <= cap
        assert request_size(batch, body) <= MAX_REQUEST_BYTES
        assert json.loads(dumps(SendMessageRequest(to=batch, type="txt", body=body)))["to"] == batch


def test_batches_tile_the_windows_of_a_quota():
    # 20 groups a second, 3 a request: every window is 6 batches of 3 and one of 2.
    packer = Packer(cap=3, base_size=100, window=20)
    sizes = [len(b) for b in pack_recipients((f"g{i}" for i in range(45)), packer)]
    assert sizes == [3] * 6 + [2] + [3] * 6 + [2] + [3, 2]


@given(
    ids=st.lists(st.text(min_size=1, max_size=64), max_size=300, unique=True),
    cap=st.sampled_from([3, 10, 600]),
    window=st.integers(1, 120),
)
def test_every_window_ends_on_a_batch_boundary(ids, cap, window):
    base = request_size([], TextBody(msg="hi"))
    batches = list(pack_recipients(ids, Packer(cap=cap, base_size=base, window=window)))
    assert [i for batch in batches for i in batch] == ids
    ends, total = set(), 0
    for batch in batches:
        assert 1 <= len(batch) <= cap
        assert request_size(batch, TextBody(msg="hi")) <= MAX_REQUEST_BYTES
        total += len(batch)
        ends.add(total)
    assert set(range(window, len(ids) + 1, window)) <= ends
