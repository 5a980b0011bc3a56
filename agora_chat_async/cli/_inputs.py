"""What the ``agora-chat`` commands read: files, JSON objects, message bodies, recipients."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio import AsyncFile

from .._converter import BODY_TYPES, structure_body
from .._models import Body, UnknownBody
from ._settings import CliError

__all__ = ["json_object", "message_body", "open_for_writing", "read_text", "recipients"]


def read_text(path: str, what: str) -> str:
    """The text of *path*, or a :class:`CliError` naming *what* could not be read."""
    try:
        return Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(
            f"cannot read {what} {path!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def json_object(text: str, where: str) -> dict[str, Any]:
    """*text* as a JSON object, or a :class:`CliError` saying *where* it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise CliError(f"{where}: not a JSON object")
    return value


def message_body(data: Mapping[str, Any], where: str) -> Body:
    """A message body from its JSON form; an unknown type is a :class:`CliError`."""
    body = structure_body(data)
    if isinstance(body, UnknownBody):
        raise CliError(
            f"{where}: unknown body type {body.type!r} or fields that do not match it "
            f"(types: {', '.join(BODY_TYPES)})"
        )
    return body


def recipients(args: argparse.Namespace) -> list[str]:
    """The ids on the command line, else in ``--file``, else on stdin; one a line."""
    if args.recipients:
        lines = list(args.recipients)
    elif args.file:
        lines = read_text(args.file, "the recipients file").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    # A blank line is an id that cannot be sent, failed with its position like any
    # (``_screen.py``): the positions stay those of the file's lines.
    ids = [line.strip() for line in lines]
    if not any(ids):
        raise CliError("no recipients: give ids, --file FILE, or ids on stdin, one a line")
    return ids


async def open_for_writing(path: str, *, append: bool = False) -> AsyncFile[str]:
    """*path* opened for writing text (or appending to it), or a :class:`CliError`."""
    try:
        if append:
            return await anyio.open_file(path, "a", encoding="utf-8")
        return await anyio.open_file(path, "w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path!r}: {exc.strerror}") from None
