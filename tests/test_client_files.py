"""Upload and download, from the reference's examples."""

from __future__ import annotations

import io
import os
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from agora_chat_async import (
    MAX_UPLOAD_BYTES,
    AuthenticationError,
    ImageSize,
    NotFoundError,
    OutcomeUnknownError,
    TransportError,
    ValidationError,
)

from .conftest import API

UPLOAD_RESPONSE = {
    "action": "post",
    "application": "8be024f0-XXXX-XXXX-b697-5d598d5f8402",
    "path": "/chatfiles",
    "uri": "https://XXXX/XXXX/XXXX/chatfiles",
    "entities": [
        {
            "uuid": "5fd74830-XXXX-XXXX-822a-81ea50bb049d",
            "type": "chatfile",
            "share-secret": "X9dIOla-EemnXXXXtUZLGyqG9Y-XXXX_ysw27NqTV1_g7Yc",
        }
    ],
    "timestamp": 1554371126338,
    "duration": 0,
    "organization": "XXXX",
    "applicationName": "XXXX",
}


def multipart(request: httpx.Request) -> bytes:
    return request.content if request.content else b"".join(request.stream)


@pytest.fixture
def upload(api):
    return api.post("/chatfiles").mock(return_value=httpx.Response(200, json=UPLOAD_RESPONSE))


async def test_upload_a_path_with_restricted_access(client, upload, tmp_path: Path):
    image = tmp_path / "IMG_2953.JPG"
    image.write_bytes(b"\xff\xd8" + b"x" * 20_000)
    uploaded = await client.upload_file(
        image, restrict_access=True, thumbnail_size=ImageSize(width=200, height=100)
    )
    request = upload.calls.last.request
    assert request.headers["restrict-access"] == "true"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    content = multipart(request)
    assert b'name="file"; filename="IMG_2953.JPG"' in content
    assert b"Content-Type: image/jpeg" in content
    assert b'name="thumbnail-width"\r\n\r\n200' in content
    assert b'name="thumbnail-height"\r\n\r\n100' in content
    assert uploaded.uuid == "5fd74830-XXXX-XXXX-822a-81ea50bb049d"
    assert uploaded.share_secret == "X9dIOla-EemnXXXXtUZLGyqG9Y-XXXX_ysw27NqTV1_g7Yc"
    assert uploaded.url == f"{API}/chatfiles/5fd74830-XXXX-XXXX-822a-81ea50bb049d"


async def test_upload_bytes_and_streams(client, upload):
    await client.upload_file(b"hello", filename="a.txt")
    assert b'filename="a.txt"' in multipart(upload.calls.last.request)
    assert "restrict-access" not in upload.calls.last.request.headers
    await client.upload_file(io.BytesIO(b"stream"), filename="b.bin")
    assert b"stream" in multipart(upload.calls.last.request)


async def test_upload_a_non_seekable_stream(client, upload):
    read_end, write_end = os.pipe()
    os.write(write_end, b"piped data")
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        await client.upload_file(pipe, filename="pipe.bin")
    assert b"piped data" in multipart(upload.calls.last.request)


async def test_upload_refuses_oversize_and_non_regular_files_before_sending(
    client, upload, tmp_path: Path
):
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(ValidationError, match="at most 10000000"):
        await client.upload_file(big)
    with pytest.raises(ValidationError, match="not a regular file"):
        await client.upload_file(tmp_path)
    with pytest.raises(ValidationError, match="cannot read"):
        await client.upload_file(tmp_path / "missing.jpg")
    with pytest.raises(ValidationError, match="at most"):
        await client.upload_file(b"x" * (MAX_UPLOAD_BYTES + 1))
    with pytest.raises(ValidationError, match="file"):
        await client.upload_file(12345)
    assert upload.call_count == 0


async def test_upload_with_a_malformed_answer(client, api):
    """The file may be stored (the service said 200), its uuid unknown: an unknown outcome."""
    api.post("/chatfiles").mock(return_value=httpx.Response(200, json={"entities": []}))
    with pytest.raises(OutcomeUnknownError, match="entities"):
        await client.upload_file(b"x")


@pytest.mark.parametrize("failure", ["500", "read timeout"])
async def test_an_upload_is_never_repeated_after_an_ambiguous_failure(client, api, failure):
    """It was retried after a read timeout or a 500 (a second stored file each time), and
    reported as a transport error rather than an unknown outcome."""
    route = api.post("/chatfiles")
    if failure == "500":
        route.mock(return_value=httpx.Response(500, json={"error": "internal"}))
    else:
        route.mock(side_effect=httpx.ReadTimeout("read timeout"))
    with pytest.raises(OutcomeUnknownError):
        await client.upload_file(b"x")
    assert route.call_count == 1


async def test_download_to_a_path_writes_atomically(client, api, tmp_path: Path):
    route = api.get("/chatfiles/7f456bf0-XXXX-XXXX-b630-777db304f26c").mock(
        return_value=httpx.Response(200, content=b"JPEGDATA" * 1000)
    )
    target = tmp_path / "image.JPG"
    written = await client.download_file(
        "7f456bf0-XXXX-XXXX-b630-777db304f26c",
        target,
        share_secret="f0Vr-uyyEeiHpHmsu53XXXXXXXXZYgyLkdfsZ4xo2Z0cSBnB",
    )
    assert written == 8000
    assert target.read_bytes() == b"JPEGDATA" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.JPG"]
    headers = route.calls.last.request.headers
    assert headers["Accept"] == "application/octet-stream"
    assert headers["share-secret"] == "f0Vr-uyyEeiHpHmsu53XXXXXXXXZYgyLkdfsZ4xo2Z0cSBnB"
    assert "thumbnail" not in headers


@pytest.mark.parametrize("to_path", [True, False])
async def test_download_reports_progress_against_the_announced_size(client, api, tmp_path, to_path):
    api.get("/chatfiles/u1").mock(return_value=httpx.Response(200, content=b"x" * 200_000))
    seen: list[tuple[int, int | None]] = []
    destination = tmp_path / "f.bin" if to_path else BytesIO()
    written = await client.download_file(
        "u1", destination, progress=lambda done, total: seen.append((done, total))
    )
    assert written == 200_000
    assert seen[-1] == (200_000, 200_000)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


async def test_download_a_thumbnail_to_a_stream(client, api):
    route = api.get("/chatfiles/abc").mock(return_value=httpx.Response(200, content=b"thumb"))
    sink = io.BytesIO()
    assert await client.download_file("abc", sink, thumbnail=True) == 5
    assert sink.getvalue() == b"thumb"
    assert route.calls.last.request.headers["thumbnail"] == "true"


async def test_a_failed_download_leaves_nothing_behind(client, api, tmp_path: Path):
    api.get("/chatfiles/gone").mock(
        return_value=httpx.Response(404, json={"error": "file_not_found"})
    )
    target = tmp_path / "out.bin"
    with pytest.raises(NotFoundError):
        await client.download_file("gone", target)
    assert list(tmp_path.iterdir()) == []


async def test_an_interrupted_download_leaves_nothing_behind(client, api, tmp_path: Path):
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b"partial"
            raise httpx.ReadError("connection reset")

    api.get("/chatfiles/abc").mock(return_value=httpx.Response(200, stream=Broken()))
    with pytest.raises(TransportError, match="ReadError"):
        await client.download_file("abc", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


async def test_download_of_a_restricted_file_without_its_secret(client, api, tmp_path: Path):
    api.get("/chatfiles/abc").mock(
        return_value=httpx.Response(
            401,
            json={
                "error": "auth_bad_access_token",
                "exception": "org.apache.usergrid.rest.exceptions.SecurityException",
                "error_description": "Unable to authenticate due to corrupt access token",
            },
        )
    )
    with pytest.raises(AuthenticationError, match="corrupt access token"):
        await client.download_file("abc", tmp_path / "x")
