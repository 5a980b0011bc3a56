"""Files on both sides of the wire: what an upload reads, and where a download goes.

An upload's size is checked before anything is sent (a path is ``stat``-ed and streamed,
never read whole; a stream that cannot seek is spooled, at most the limit). A download to
a path is written to a temporary file beside it and moved into place only when complete,
so an interrupted download never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from io import BytesIO
from pathlib import Path
from typing import IO, Final, TypeAlias, cast

import anyio
import anyio.to_thread

from ._exceptions import ValidationError

__all__ = ["MAX_UPLOAD_BYTES", "FileSource", "open_upload", "save"]

#: The largest file the service accepts (its "10 MB", read as 10,000,000 bytes).
MAX_UPLOAD_BYTES: Final = 10_000_000
FileSource: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes]


async def save(
    body: AsyncIterable[bytes],
    destination: str | os.PathLike[str] | IO[bytes],
    progress: Callable[[int, int | None], object] | None,
    total: int | None = None,
) -> int:
    """Write *body* to *destination* (a path, atomically, or a binary file object);
    the bytes written. *progress* is called with (written, total) after each chunk.

    Raises:
        OSError: the destination cannot be written.
    """
    total = getattr(body, "length", total)
    written = 0
    if not isinstance(destination, str | os.PathLike):
        async for chunk in body:
            destination.write(chunk)
            written += len(chunk)
            if progress is not None:
                progress(written, total)
        return written
    target = Path(destination)
    partial = await anyio.to_thread.run_sync(_temporary_beside, target)
    try:
        async with await anyio.open_file(partial, "wb") as out:
            async for chunk in body:
                await out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, total)
        await anyio.to_thread.run_sync(os.replace, partial, target)
    except BaseException:
        with anyio.CancelScope(shield=True), suppress(FileNotFoundError):
            await anyio.to_thread.run_sync(os.unlink, partial)
        raise
    return written


def _temporary_beside(target: Path) -> str:
    """An empty temporary file in *target*'s directory (a rename there is atomic)."""
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    return partial


@asynccontextmanager
async def open_upload(
    file: FileSource, filename: str | None
) -> AsyncIterator[tuple[str, IO[bytes]]]:
    """Yield the name and a binary stream of *file*, checking its size before anything is
    sent. The file work (``stat``, ``open``, spooling a stream that cannot seek) runs in a
    worker thread, never on the event loop; httpx then reads the stream a chunk at a time."""
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        try:
            info = await anyio.to_thread.run_sync(path.stat)
            if stat.S_ISREG(info.st_mode):
                check_upload_size(info.st_size)
                stream = await anyio.to_thread.run_sync(path.open, "rb")
        except OSError as exc:
            raise ValidationError("file", f"cannot read {str(path)!r}: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise ValidationError("file", f"{str(path)!r} is not a regular file")
        try:
            yield filename or path.name, stream
        finally:
            stream.close()
        return
    if isinstance(file, bytes | bytearray | memoryview):
        check_upload_size(len(file))
        yield filename or "file", BytesIO(bytes(file))
        return
    if not hasattr(file, "read"):
        raise ValidationError("file", f"must be a path, bytes or a binary stream, got {file!r}")
    name = filename or Path(str(getattr(file, "name", "") or "file")).name
    if file.seekable():
        position = file.tell()
        size = file.seek(0, os.SEEK_END) - position
        file.seek(position)
        check_upload_size(size)
        yield name, file
        return
    # Not seekable: copy to a spooled file (memory up to 1 MB, then disk), at most the limit.
    spool = await anyio.to_thread.run_sync(_spool, file)
    try:
        yield name, cast(IO[bytes], spool)
    finally:
        spool.close()


def _spool(file: IO[bytes]) -> tempfile.SpooledTemporaryFile[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - returned open
    try:
        while chunk := file.read(64 * 1024):
            spool.write(chunk)
            check_upload_size(spool.tell())
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def check_upload_size(size: int) -> None:
    """Refuse a file over :data:`MAX_UPLOAD_BYTES` before it is sent."""
    if size > MAX_UPLOAD_BYTES:
        raise ValidationError(
            "file", f"is {size} bytes; the service accepts files of at most {MAX_UPLOAD_BYTES}"
        )
