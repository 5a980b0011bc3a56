"""One file written so that a crash leaves the old contents or the new, never a torn file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """Replace *path* with *data*: write a temporary file beside it, ``fsync`` it, rename it
    over *path* (atomic on POSIX and Windows), then ``fsync`` the directory (POSIX) so that
    the rename itself survives a power cut.

    Raises:
        OSError: the file or its directory cannot be written.
    """
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    if hasattr(os, "O_DIRECTORY"):
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
