"""Recipient batching: how a list of recipients becomes requests the service accepts.

A send request may name at most 600 users, 3 groups or 10 rooms, and its body may
not exceed 5 KB. The second limit usually binds first: 600 user ids of a dozen
characters are about 9 KB of JSON. So recipients are packed greedily, in order,
into batches that respect both the count cap and the byte limit, measured on the
exact bytes that will be sent (the request with its message, ext and ``to``).

"5 KB" and "3 KB" are read as 5000 and 3000 bytes, the smaller of the two
possible readings, so that no batch the client builds can be refused for size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Final

from ._exceptions import ValidationError
from ._limits import LimitName

__all__ = [
    "MAX_CONTENT_BYTES",
    "MAX_REQUEST_BYTES",
    "RECIPIENT_CAPS",
    "encoded_id_size",
    "pack_recipients",
]

#: The documented cap on a send request's body ("5 KB"), read as 5000 bytes.
MAX_REQUEST_BYTES: Final = 5000
#: The documented cap on message body plus ext ("3 KB"), read as 3000 bytes.
MAX_CONTENT_BYTES: Final = 3000
#: The documented cap on recipients per send request.
RECIPIENT_CAPS: Final[dict[LimitName, int]] = {"users": 600, "groups": 3, "rooms": 10}


def encoded_id_size(recipient: str) -> int:
    """Bytes *recipient* takes inside the request's ``to`` array, quotes included."""
    return len(json.dumps(recipient, ensure_ascii=False).encode("utf-8"))


def pack_recipients(
    recipients: Sequence[str], *, cap: int, base_size: int, max_bytes: int = MAX_REQUEST_BYTES
) -> Iterator[list[str]]:
    """Split *recipients* into order-preserving batches of at most *cap* ids and *max_bytes*.

    *base_size* is the size of the request with an empty ``to`` array; each id
    adds its encoded size plus a comma after the first.

    Raises:
        ValidationError: one recipient alone would not fit in a request.
    """
    batch: list[str] = []
    size = base_size
    for index, recipient in enumerate(recipients):
        added = encoded_id_size(recipient)
        if base_size + added > max_bytes:
            raise ValidationError(
                f"to[{index}]",
                f"this id makes the request {base_size + added} bytes, over the "
                f"{max_bytes} byte limit even alone; shorten the message or ext",
            )
        extra = added + (1 if batch else 0)
        if batch and (len(batch) >= cap or size + extra > max_bytes):
            yield batch
            batch, size, extra = [], base_size, added
        batch.append(recipient)
        size += extra
    if batch:
        yield batch
