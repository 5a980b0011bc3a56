"""Streaming a history file: download, gunzip if needed, decode one JSON line at a time.

The history endpoint answers with a signed URL to a file of JSON lines, usually
gzip-compressed. :class:`HistoryStream` downloads it as a stream, detects gzip by
its magic bytes (not by headers, which storage services set inconsistently),
decompresses incrementally and yields one :class:`HistoryRecord` per line.
Memory is bounded by the longest line, not by the file.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Final, Self, final

from ._converter import converter
from ._exceptions import UnexpectedResponseError, excerpt
from ._models import HistoryRecord
from ._responses import ResponseBody

__all__ = ["MAX_LINE_BYTES", "HistoryStream", "iter_lines"]

GZIP_MAGIC: Final = b"\x1f\x8b"
#: A history line longer than this is refused rather than buffered without bound.
MAX_LINE_BYTES: Final = 16 * 1024 * 1024


#: The most bytes one decompression step makes: a small compressed chunk can expand a
#: thousandfold, so its output is taken a piece at a time (``max_length``).
INFLATE_STEP: Final = 256 * 1024


async def iter_lines(
    chunks: AsyncIterator[bytes], *, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[bytes]:
    """Split a byte stream, gzip or plain, into lines without their newline.

    Like ``bytes.split(b"\\n")`` on the whole (decompressed) stream, less a final
    empty piece: ``b"a\\nb\\n"`` gives ``a`` and ``b``. Memory is bounded by
    *max_line_bytes* plus :data:`INFLATE_STEP`, whatever the compression ratio; time is
    linear in the stream, however long its lines.

    Raises:
        UnexpectedResponseError: the gzip data is corrupt or truncated, or a line is
            longer than *max_line_bytes*.
    """
    gunzip: zlib._Decompress | None = None
    head: bytes | None = b""  # the first bytes, until there are enough to recognise gzip
    line = bytearray()

    def split(data: bytes) -> list[bytes]:
        lines, start = [], 0
        while (newline := data.find(b"\n", start)) >= 0:
            line.extend(memoryview(data)[start:newline])
            lines.append(bytes(line))
            line.clear()
            start = newline + 1
        line.extend(memoryview(data)[start:])
        if len(line) > max_line_bytes:
            raise UnexpectedResponseError(
                f"a history line is longer than {max_line_bytes} bytes; if the file is right, "
                "read it with a larger max_line_bytes",
                status_code=200,
            )
        return lines

    def inflate(data: bytes) -> list[bytes]:
        assert gunzip is not None  # noqa: S101 - called for gzip data only
        lines = []
        try:
            while data:
                lines += split(gunzip.decompress(data, INFLATE_STEP))
                data = gunzip.unconsumed_tail
        except zlib.error as exc:
            raise UnexpectedResponseError(
                f"the history file is not valid gzip: {exc}", status_code=200
            ) from None
        return lines

    async for received in chunks:
        data = received
        if head is not None:
            head += received
            if len(head) < len(GZIP_MAGIC):
                continue
            if head.startswith(GZIP_MAGIC):
                gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data, head = head, None
        for piece in inflate(data) if gunzip is not None else split(data):
            yield piece
    if gunzip is not None and not gunzip.eof:
        raise UnexpectedResponseError("the history file's gzip data is truncated", status_code=200)
    # A file shorter than the magic is plain text; what follows the last newline is a line too.
    for piece in split(head or b""):
        yield piece
    if line:
        yield bytes(line)


@final
class HistoryStream:
    """An async iterator of :class:`HistoryRecord`, and an async context manager.

    Use it as ``async with client.iter_history(hour) as records: async for record
    in records: ...`` so that the download is closed when you stop early; a plain
    ``async for`` also works and closes the download when the file ends or fails.
    """

    __slots__ = ("_closed", "_iterator", "_max_line_bytes", "_open", "_stack")

    def __init__(
        self,
        open_stream: Callable[[], AbstractAsyncContextManager[ResponseBody]],
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self._open = open_stream
        self._max_line_bytes = max_line_bytes
        self._stack = AsyncExitStack()
        self._iterator: AsyncGenerator[HistoryRecord] | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the download; the iterator then ends."""
        self._closed = True
        iterator, self._iterator = self._iterator, None
        try:
            if iterator is not None:
                await iterator.aclose()
        finally:
            await self._stack.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> HistoryRecord:
        if self._closed:
            raise StopAsyncIteration
        if self._iterator is None:
            body = await self._stack.enter_async_context(self._open())
            self._iterator = self._records(body, self._max_line_bytes)
        try:
            return await anext(self._iterator)
        except BaseException:
            await self.aclose()
            raise

    @staticmethod
    async def _records(body: ResponseBody, max_line_bytes: int) -> AsyncGenerator[HistoryRecord]:
        number = 0
        async for line in iter_lines(aiter(body), max_line_bytes=max_line_bytes):
            number += 1
            if not line.strip():
                continue
            try:
                record = converter.structure(json.loads(line), HistoryRecord)
            except Exception as exc:
                raise UnexpectedResponseError(
                    f"history line {number} is not a valid record ({type(exc).__name__})",
                    status_code=200,
                    body_excerpt=excerpt(line[:500].decode("utf-8", "replace")),
                ) from exc
            yield record
