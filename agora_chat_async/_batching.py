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

from collections.abc import Iterable, Iterator
from typing import Final, final

import attrs

from ._converter import SendMessageRequest, converter, encode_json
from ._exceptions import ValidationError
from ._rates import LimitName

__all__ = [
    "MAX_CONTENT_BYTES",
    "MAX_REQUEST_BYTES",
    "RECIPIENT_CAPS",
    "Packer",
    "SendEncoding",
    "check_content_size",
    "encoded_id_size",
    "pack_recipients",
]

#: The documented cap on a send request's body ("5 KB"), read as 5000 bytes.
MAX_REQUEST_BYTES: Final = 5000
#: The documented cap on message body plus ext ("3 KB"), read as 3000 bytes.
MAX_CONTENT_BYTES: Final = 3000
#: The documented cap on recipients per send request.
RECIPIENT_CAPS: Final[dict[LimitName, int]] = {"users": 600, "groups": 3, "rooms": 10}


def check_content_size(size: int) -> None:
    """Refuse a message whose body plus ext encodes to *size* bytes, if over the cap.

    Raises:
        ValidationError: *size* is over :data:`MAX_CONTENT_BYTES`.
    """
    if size > MAX_CONTENT_BYTES:
        raise ValidationError(
            "body", f"body plus ext is {size} bytes; the service allows {MAX_CONTENT_BYTES}"
        )


def encoded_id_size(recipient: str) -> int:
    """Bytes *recipient* takes inside the request's ``to`` array, quotes included."""
    plain = recipient.isascii() and recipient.isprintable()
    if plain and '"' not in recipient and "\\" not in recipient:
        return len(recipient) + 2  # printable ASCII other than " and \ is sent as is
    return len(encode_json(recipient))


@final
class SendEncoding:
    """The exact bytes of one message's send requests, and the sizes the packer needs.

    The message (everything but ``to``) is encoded once, by the converter; each
    batch's request is that encoding with the batch's JSON array spliced in as
    ``to``, so a batch of *n* ids costs one JSON encoding of *n* strings and the
    packer's arithmetic (:attr:`base_size` plus :func:`encoded_id_size` of each id
    plus the commas) is the length of what is sent, byte for byte.

    Raises:
        ValidationError: ``ext`` is not JSON-serialisable, or body plus ext is over
            :data:`MAX_CONTENT_BYTES`.
    """

    __slots__ = ("_tail", "base_size")

    _HEAD: Final = b'{"to":'

    def __init__(self, template: SendMessageRequest) -> None:
        if template.to:
            template = attrs.evolve(template, to=[])
        try:
            wire = converter.unstructure(template)
            encoded = encode_json(wire)
        except ValidationError:  # a number JSON cannot carry
            raise
        except (TypeError, ValueError) as exc:
            raise ValidationError("ext", f"must be JSON-serialisable: {exc}") from None
        if len(encoded) > MAX_CONTENT_BYTES:  # else body plus ext is smaller still
            ext = encode_json(wire["ext"]) if "ext" in wire else b""
            check_content_size(len(encode_json(wire["body"])) + len(ext))
        if not encoded.startswith(self._HEAD + b"[]"):  # pragma: no cover - a field order bug
            raise AssertionError("'to' must be the first field of SendMessageRequest")
        self._tail = encoded[len(self._HEAD) + 2 :]
        #: The request's size with an empty ``to`` array.
        self.base_size = len(encoded)

    @property
    def message(self) -> bytes:
        """The request body's bytes but its recipients: the message, with every option."""
        return self._tail

    def encode(self, batch: list[str]) -> bytes:
        """The request body that sends this message to *batch*."""
        return self._HEAD + encode_json(batch) + self._tail


@final
class Packer:
    """Packs recipients, one at a time, into batches; the streaming form of :func:`pack_recipients`.

    Batches hold at most *cap* ids and *max_bytes* of request. With *window* (the
    units a quota's window holds), batches also end where each *window* ids end, so
    that they tile the windows: the last batch of each window holds what the window has
    left (20 groups a second in batches of 3: 3, 3, 3, 3, 3, 3, 2, then again), no
    batch is split by the limiter, and each window's requests take the places of the
    window's before, one for one. (When the limiter's window has room for only part of
    a batch anyway, the sender sends that part at once and the rest next: see
    :meth:`Limiter.acquire`'s ``min_units``.)
    """

    __slots__ = ("_base", "_batch", "_cap", "_left", "_max_bytes", "_size", "_window")

    def __init__(
        self,
        *,
        cap: int,
        base_size: int,
        max_bytes: int = MAX_REQUEST_BYTES,
        window: int | None = None,
    ) -> None:
        self._cap, self._base, self._max_bytes = cap, base_size, max_bytes
        self._batch: list[str] = []
        self._size = base_size
        self._window = window if window is not None and window > 0 else None
        #: Ids the current window has left (with *window*).
        self._left = self._window or 0

    @property
    def cap(self) -> int:
        """The most ids a batch holds."""
        return self._cap

    def add(self, recipient: str, index: int = 0) -> list[list[str]]:
        """Add one recipient; return the batches this completes (none, one or two).

        Raises:
            ValidationError: this recipient alone would not fit in a request.
        """
        added = encoded_id_size(recipient)
        if self._base + added > self._max_bytes:
            raise ValidationError(
                f"to[{index}]",
                f"this id makes the request {self._base + added} bytes, over the "
                f"{self._max_bytes} byte limit even alone; shorten the message or ext",
            )
        done: list[list[str]] = []
        if self._batch and self._size + 1 + added > self._max_bytes:
            done.append(self._close())
        self._size += added + (1 if self._batch else 0)
        self._batch.append(recipient)
        if len(self._batch) >= self._cap or len(self._batch) == self._left:
            done.append(self._close())
        return done

    def flush(self) -> list[str] | None:
        """The last, partial batch, if any."""
        return self._close() or None

    def _close(self) -> list[str]:
        batch, self._batch, self._size = self._batch, [], self._base
        if self._window is not None:
            self._left -= len(batch)
            if self._left <= 0:
                self._left = self._window
        return batch


def pack_recipients(recipients: Iterable[str], packer: Packer) -> Iterator[list[str]]:
    """Split *recipients* into order-preserving batches with *packer* (see :class:`Packer`).

    Raises:
        ValidationError: one recipient alone would not fit in a request.
    """
    for index, recipient in enumerate(recipients):
        yield from packer.add(recipient, index)
    last = packer.flush()
    if last is not None:
        yield last
