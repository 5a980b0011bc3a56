"""History: the signed link, and streaming its (gzip) JSON-lines file."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from agora_chat_async import (
    HistoryRecord,
    ImageBody,
    NotFoundError,
    TextBody,
    UnexpectedResponseError,
    ValidationError,
)

HISTORY_URL = "https://oss.example.com/history/2018112717.gz"
SIGNED = f"{HISTORY_URL}?Expires=1543316122&OSSAccessKeyId=KEYID&Signature=SIGNATURE"
HISTORY_RESPONSE = {
    "action": "get",
    "application": "8be024f0-XXXX-XXXX-b697-5d598d5f8402",
    "uri": "http://XXXX/XXXX/XXXX/chatmessages/2018112717",
    "data": [{"url": SIGNED}],
    "timestamp": 1543314322601,
    "duration": 0,
    "organization": "XXXX",
    "applicationName": "XXXX",
}


def record(index: int, body: dict) -> dict:
    return {
        "msg_id": f"5I02W-XX-{index}",
        "timestamp": 1403099033211 + index,
        "direction": "outgoing",
        "to": "bob",
        "from": "alice",
        "chat_type": "chat",
        "payload": {"bodies": [body], "ext": {"key1": "value1"}, "from": "alice", "to": "bob"},
    }


def lines(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.fixture
def history_link(api):
    return api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(200, json=HISTORY_RESPONSE)
    )


async def test_get_history_file_returns_the_link_and_its_expiry(client, history_link):
    link = await client.get_history_file("2018112717")
    assert link.url == SIGNED
    assert link.expires_at == datetime.fromtimestamp(1543316122, tz=UTC)
    assert "SIGNATURE" not in repr(link)


async def test_an_aware_datetime_is_converted_to_its_utc_hour(client, api):
    route = api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(200, json=HISTORY_RESPONSE)
    )
    beijing = timezone(timedelta(hours=8))
    await client.get_history_file(datetime(2018, 11, 28, 1, 30, tzinfo=beijing))
    assert route.call_count == 1


async def test_a_single_object_data_is_accepted_too(client, api):
    api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(200, json={"data": {"url": SIGNED}})
    )
    assert (await client.get_history_file("2018112717")).url == SIGNED


@pytest.mark.parametrize(
    "hour", ["2018-11-27", "20181127", "2018113217", datetime(2018, 1, 1), 2018112717]
)
async def test_malformed_hours_are_refused(client, hour):
    with pytest.raises(ValidationError, match="hour"):
        await client.get_history_file(hour)


async def test_no_url_in_the_answer(client, api):
    api.get("/chatmessages/2018112717").mock(return_value=httpx.Response(200, json={"data": []}))
    with pytest.raises(UnexpectedResponseError, match=r"data\.url"):
        await client.get_history_file("2018112717")


@pytest.mark.parametrize("compress", [True, False])
async def test_iter_history_streams_typed_records(client, api, history_link, compress):
    records = [
        record(0, {"msg": "welcome to agora!", "type": "txt"}),
        record(
            1,
            {
                "file_length": 128827,
                "filename": "test1.jpg",
                "type": "img",
                "size": {"height": 1325, "width": 746},
                "url": "u",
            },
        ),
    ]
    payload = lines(records)
    download = api.get(HISTORY_URL).mock(
        return_value=httpx.Response(200, content=gzip.compress(payload) if compress else payload)
    )
    found = [r async for r in client.iter_history("2018112717")]
    assert [type(r) for r in found] == [HistoryRecord, HistoryRecord]
    assert found[0].bodies == (TextBody(msg="welcome to agora!"),)
    assert isinstance(found[1].bodies[0], ImageBody)
    request = download.calls.last.request
    assert "Authorization" not in request.headers  # the token never goes to the storage host
    assert request.url.params["Signature"] == "SIGNATURE"


async def test_iter_history_can_stop_early_and_close(client, api, history_link):
    api.get(HISTORY_URL).mock(
        return_value=httpx.Response(
            200,
            content=gzip.compress(
                lines([record(i, {"msg": str(i), "type": "txt"}) for i in range(100)])
            ),
        )
    )
    async with client.iter_history("2018112717") as records:
        async for found in records:
            if found.message_id.endswith("-2"):
                break
    with pytest.raises(StopAsyncIteration):
        await records.__anext__()


async def test_a_bad_line_is_reported_with_its_number(client, api, history_link):
    content = lines([record(0, {"msg": "ok", "type": "txt"})]) + b"{not json}\n"
    api.get(HISTORY_URL).mock(return_value=httpx.Response(200, content=content))
    records = client.iter_history("2018112717")
    first = await records.__anext__()
    assert first.message_id == "5I02W-XX-0"
    with pytest.raises(UnexpectedResponseError, match="line 2"):
        await records.__anext__()


async def test_truncated_gzip_is_an_error(client, api, history_link):
    data = gzip.compress(lines([record(i, {"msg": "x" * 50, "type": "txt"}) for i in range(50)]))
    api.get(HISTORY_URL).mock(return_value=httpx.Response(200, content=data[: len(data) // 2]))
    with pytest.raises(UnexpectedResponseError, match="truncated"):
        async for _ in client.iter_history("2018112717"):
            pass


async def test_expired_link_surfaces_the_storage_error(client, api, history_link):
    api.get(HISTORY_URL).mock(return_value=httpx.Response(403, text="<Error>AccessDenied</Error>"))
    from agora_chat_async import ForbiddenError

    with pytest.raises(ForbiddenError, match="AccessDenied"):
        async for _ in client.iter_history("2018112717"):
            pass


async def test_no_history_for_the_hour(client, api):
    api.get("/chatmessages/2018112717").mock(
        return_value=httpx.Response(404, json={"error": "storage_object_not_found"})
    )
    with pytest.raises(NotFoundError):
        async for _ in client.iter_history("2018112717"):
            pass
