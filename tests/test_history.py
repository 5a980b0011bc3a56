"""iter_lines: gzip detected by magic bytes, lines split across any chunking."""

import gzip
import time
import tracemalloc

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


async def test_a_small_compressed_chunk_is_inflated_a_piece_at_a_time():
    """A 64 MB run of one byte compresses to 64 KB; it was inflated whole, in one call."""
    bomb = gzip.compress(b"x" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(UnexpectedResponseError, match="longer than 1048576 bytes"):
            await collect_limited(bomb, max_line_bytes=1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # the line's cap and one step, not 64 MB


async def collect_limited(data: bytes, **options: int) -> list[bytes]:
    return [line async for line in iter_lines(chunked(data, [len(data)]), **options)]


async def test_a_long_line_is_split_in_linear_time():
    """The line buffer was copied whole at every chunk: quadratic in a long line. Compared
    with the same bytes as short lines (more work per byte, in Python), in the same run."""

    async def seconds(data: bytes) -> float:
        started = time.perf_counter()
        async for _ in iter_lines(chunked(data, [16 * 1024] * (len(data) // 16384 + 1))):
            pass
        return time.perf_counter() - started

    size = 12 * 1024 * 1024
    short_lines = (b"x" * 63 + b"\n") * (size // 64)
    one_line = b"x" * size
    baseline = min([await seconds(short_lines) for _ in range(3)])
    long = min([await seconds(one_line) for _ in range(3)])
    # Linear: well under the baseline; quadratic: 768 chunks copying 6 MB each, ~100x it.
    assert long < 2 * baseline, (long, baseline)
