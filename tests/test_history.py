"""iter_lines: gzip detected by magic bytes, lines split across any chunking."""

import gzip

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agora_chat_async import UnexpectedResponseError
from agora_chat_async._history import iter_lines


async def chunked(data: bytes, sizes: list[int]):
    position = 0
    for size in sizes:
        if position >= len(data):
            break
        yield data[position : position + size]
        position += size
    if position < len(data):
        yield data[position:]


async def collect(data: bytes, sizes: list[int]) -> list[bytes]:
    return [line async for line in iter_lines(chunked(data, sizes))]


@given(
    text_lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    sizes=st.lists(st.integers(1, 17), max_size=50),
    compress=st.booleans(),
)
async def test_any_chunking_gives_the_same_lines(text_lines, sizes, compress):
    plain = b"\n".join(text_lines)
    # A plain file that starts with the gzip magic is indistinguishable from gzip; history
    # files are JSON lines, which start with "{".
    assume(compress or not plain.startswith(b"\x1f\x8b"))
    data = gzip.compress(plain) if compress else plain
    found = await collect(data, sizes)
    expected = plain.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert found == expected


async def test_a_one_byte_file():
    assert await collect(b"x", [1]) == [b"x"]


async def test_an_empty_file():
    assert await collect(b"", []) == []


async def test_corrupt_gzip_is_an_error():
    with pytest.raises(UnexpectedResponseError, match="not valid gzip"):
        await collect(b"\x1f\x8b" + b"garbage" * 10, [100])
