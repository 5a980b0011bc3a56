"""The public value types: message bodies, and what each endpoint returns.

Every class here is an immutable ``attrs`` class. Field names are Pythonic
(``custom_event``, ``share_secret``, ``sender``); the mapping to the wire names
(``customEvent``, ``share-secret``, ``from``) lives in one place,
``_converter.py``. Bodies validate their fields when they are built, so a bad
body raises :class:`ValidationError` in your code, not in the middle of a
fan-out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal, Self, TypeAlias, final
from urllib.parse import parse_qsl, urlsplit

import attrs

from ._exceptions import AgoraChatError, OutcomeUnknownError, SendFailedError, ValidationError
from ._validate import check_text

__all__ = [
    "AudioBody",
    "BatchRecallResult",
    "Body",
    "Broadcast",
    "ChatType",
    "CmdBody",
    "CustomBody",
    "EditableType",
    "FileBody",
    "HistoryFile",
    "HistoryRecord",
    "ImageBody",
    "ImageSize",
    "ImportedMessage",
    "LocationBody",
    "OfflineStatus",
    "Recall",
    "RecallResult",
    "RoomMessageLevel",
    "SendResult",
    "TextBody",
    "UnknownBody",
    "UploadedFile",
    "VideoBody",
]

ChatType: TypeAlias = Literal["chat", "groupchat", "chatroom"]
RoomMessageLevel: TypeAlias = Literal["high", "normal", "low"]
#: The types whose messages can be edited without a new body: only their ``ext`` changes.
EditableType: TypeAlias = Literal["img", "audio", "video", "file", "loc"]
#: Whether an offline message reached its recipient yet.
OfflineStatus: TypeAlias = Literal["delivered", "undelivered"]

#: ``customEvent`` must match this pattern (reference: "[a-zA-Z0-9-_/.]{1,32}").
CUSTOM_EVENT_PATTERN: Final = re.compile(r"[a-zA-Z0-9\-_/.]{1,32}")
#: At most this many ``customExts`` entries.
MAX_CUSTOM_EXTS: Final = 16


def _non_empty_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(attribute.name, f"must be a non-empty string, got {value!r}")


def _optional_str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValidationError(attribute.name, f"must be a string or None, got {value!r}")


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(attribute.name, f"must be a non-negative integer, got {value!r}")


def _optional_non_negative_int(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is not None:
        _non_negative_int(instance, attribute, value)


def _coordinate(value: float | str) -> str:
    """Latitudes and longitudes travel as decimal strings (the reference's send examples)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError("lat/lng", f"must be a number or a decimal string, got {value!r}")
    text = str(value).strip()
    try:
        finite = math.isfinite(float(text))
    except ValueError:
        finite = False
    if not finite:
        raise ValidationError("lat/lng", f"must be a finite decimal number, got {value!r}")
    return text


@final
@attrs.frozen
class ImageSize:
    """Width and height in pixels, of an image or of a video's thumbnail."""

    width: int = attrs.field(validator=_non_negative_int)
    height: int = attrs.field(validator=_non_negative_int)


def _optional_size(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, ImageSize):
        raise ValidationError(attribute.name, f"must be an ImageSize(width, height), got {value!r}")


def _required_size(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, ImageSize):
        raise ValidationError(attribute.name, f"must be an ImageSize(width, height), got {value!r}")


def _string(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ValidationError(attribute.name, f"must be a string, got {value!r}")
    check_text(attribute.name, value)


@final
@attrs.frozen(kw_only=True)
class TextBody:
    """A text message (``txt``)."""

    type: ClassVar[str] = "txt"
    msg: str = attrs.field(validator=_string)


@final
@attrs.frozen(kw_only=True)
class ImageBody:
    """An image message (``img``); upload the file first with ``upload_file``.

    ``size`` (the image's width and height in pixels) is required by the send API.

    ``secret`` is the upload's share-secret, needed when it was uploaded with
    ``restrict_access=True``. ``file_length`` appears in history records.
    """

    type: ClassVar[str] = "img"
    url: str = attrs.field(validator=_non_empty_str)
    filename: str = attrs.field(validator=_non_empty_str)
    size: ImageSize = attrs.field(validator=_required_size)
    secret: str | None = attrs.field(default=None, repr=False, validator=_optional_str)
    file_length: int | None = attrs.field(default=None, validator=_optional_non_negative_int)


@final
@attrs.frozen(kw_only=True)
class AudioBody:
    """A voice message (``audio``); ``length`` is the duration in seconds."""

    type: ClassVar[str] = "audio"
    url: str = attrs.field(validator=_non_empty_str)
    filename: str = attrs.field(validator=_non_empty_str)
    length: int = attrs.field(validator=_non_negative_int)
    secret: str | None = attrs.field(default=None, repr=False, validator=_optional_str)
    file_length: int | None = attrs.field(default=None, validator=_optional_non_negative_int)


@final
@attrs.frozen(kw_only=True)
class VideoBody:
    """A video message (``video``).

    ``thumb`` is the URL of the separately uploaded thumbnail and
    ``thumb_secret`` its share-secret; ``length`` is the duration in seconds and
    ``file_length`` the size in bytes.
    """

    type: ClassVar[str] = "video"
    url: str = attrs.field(validator=_non_empty_str)
    length: int = attrs.field(validator=_non_negative_int)
    file_length: int = attrs.field(validator=_non_negative_int)
    thumb: str | None = attrs.field(default=None, validator=_optional_str)
    secret: str | None = attrs.field(default=None, repr=False, validator=_optional_str)
    thumb_secret: str | None = attrs.field(default=None, repr=False, validator=_optional_str)
    filename: str | None = attrs.field(default=None, validator=_optional_str)
    size: ImageSize | None = attrs.field(default=None, validator=_optional_size)


@final
@attrs.frozen(kw_only=True)
class FileBody:
    """A file message (``file``)."""

    type: ClassVar[str] = "file"
    url: str = attrs.field(validator=_non_empty_str)
    filename: str = attrs.field(validator=_non_empty_str)
    secret: str | None = attrs.field(default=None, repr=False, validator=_optional_str)
    file_length: int | None = attrs.field(default=None, validator=_optional_non_negative_int)


@final
@attrs.frozen(kw_only=True)
class LocationBody:
    """A location message (``loc``); ``lat`` and ``lng`` in degrees, sent as decimal strings."""

    type: ClassVar[str] = "loc"
    lat: str = attrs.field(converter=_coordinate)
    lng: str = attrs.field(converter=_coordinate)
    addr: str = attrs.field(validator=_string)


@final
@attrs.frozen(kw_only=True)
class CmdBody:
    """A command message (``cmd``), delivered to the app but not shown to the user."""

    type: ClassVar[str] = "cmd"
    action: str = attrs.field(validator=_string)


def _check_custom_event(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not CUSTOM_EVENT_PATTERN.fullmatch(value):
        raise ValidationError(
            "customEvent",
            f"must be 1 to 32 characters of a-z, A-Z, 0-9, '-', '_', '/', '.'; got {value!r}",
        )


def _freeze_exts(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError("customExts", f"must be a mapping of strings, got {value!r}")
    if len(value) > MAX_CUSTOM_EXTS:
        raise ValidationError(
            "customExts", f"has {len(value)} entries; at most {MAX_CUSTOM_EXTS} are allowed"
        )
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ValidationError(
                f"customExts[{key!r}]", f"keys and values must be strings, got {item!r}"
            )
    return dict(value)


@final
@attrs.frozen(kw_only=True)
class CustomBody:
    """A custom message (``custom``): an event name and up to 16 string attributes."""

    type: ClassVar[str] = "custom"
    custom_event: str | None = attrs.field(default=None, validator=_check_custom_event)
    custom_exts: Mapping[str, str] | None = attrs.field(default=None, converter=_freeze_exts)


@final
@attrs.frozen(kw_only=True)
class UnknownBody:
    """A body of a type this library does not know, as found in a history record."""

    type: str
    fields: Mapping[str, Any] = attrs.field(factory=dict)


#: Any message body this library can send.
Body: TypeAlias = (
    TextBody | ImageBody | AudioBody | VideoBody | FileBody | LocationBody | CmdBody | CustomBody
)


def _freeze_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@final
@attrs.frozen(kw_only=True)
class SendResult:
    """What happened to every recipient of a send.

    Every recipient is in exactly one of:

    - ``message_ids``: delivered; recipient -> message id;
    - ``failed``: certainly not delivered; recipient -> the error;
    - ``unknown``: the request may or may not have been processed (a read timeout,
      a 500); recipient -> :class:`OutcomeUnknownError`. Do not resend blindly.

    ``duplicates`` counts the later occurrences of ids a fan-out's input named more than
    once (recipient -> how many more times): each was sent once, at its first occurrence,
    and its outcome is in one of the three above.
    """

    message_ids: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_mapping)
    failed: Mapping[str, AgoraChatError] = attrs.field(factory=dict, converter=_freeze_mapping)
    unknown: Mapping[str, OutcomeUnknownError] = attrs.field(
        factory=dict, converter=_freeze_mapping
    )
    duplicates: Mapping[str, int] = attrs.field(factory=dict, converter=_freeze_mapping)

    @property
    def ok(self) -> bool:
        """True when every recipient was delivered."""
        return not self.failed and not self.unknown

    @property
    def recipients(self) -> int:
        """How many recipients this result accounts for."""
        return len(self.message_ids) + len(self.failed) + len(self.unknown)

    def raise_for_failures(self) -> Self:
        """Return ``self`` if every recipient was delivered.

        Raises:
            SendFailedError: some recipients failed or have an unknown outcome;
                the error carries this result as ``.result``.
        """
        if not self.ok:
            raise SendFailedError(self)
        return self

    def merge(self, other: SendResult) -> SendResult:
        """Combine two results of disjoint recipient sets (duplicates' counts add up)."""
        duplicates = dict(self.duplicates)
        for recipient, count in other.duplicates.items():
            duplicates[recipient] = duplicates.get(recipient, 0) + count
        return SendResult(
            message_ids={**self.message_ids, **other.message_ids},
            failed={**self.failed, **other.failed},
            unknown={**self.unknown, **other.unknown},
            duplicates=duplicates,
        )


@final
@attrs.frozen(kw_only=True)
class UploadedFile:
    """A file stored by the service.

    ``url`` is the file's address to put in an image, audio, video or file body;
    ``share_secret`` is needed to download it (and goes in the body's
    ``secret``) when it was uploaded with ``restrict_access=True``.
    """

    uuid: str
    url: str
    share_secret: str | None = attrs.field(default=None, repr=False)
    type: str = "chatfile"


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    return parts._replace(query="[redacted]").geturl()


@final
@attrs.frozen(kw_only=True)
class HistoryFile:
    """Where to download one hour of message history, and until when that link works.

    The URL carries a signature; its ``repr`` is redacted.
    """

    url: str = attrs.field(repr=_redact_url)
    expires_at: datetime | None = None

    @classmethod
    def from_url(cls, url: str) -> HistoryFile:
        """Build from a signed URL, reading its ``Expires`` query parameter (Unix seconds)."""
        expires_at = None
        for key, value in parse_qsl(urlsplit(url).query):
            if key.lower() == "expires" and value.isdigit():
                expires_at = datetime.fromtimestamp(int(value), tz=UTC)
        return cls(url=url, expires_at=expires_at)


@final
@attrs.frozen(kw_only=True)
class HistoryRecord:
    """One message from a history file.

    ``sender`` is the wire ``from``; ``to`` a user, group or room id depending on
    ``chat_type``; ``timestamp`` an aware UTC datetime; ``bodies`` the typed
    message bodies (:class:`UnknownBody` for types this library does not know).
    """

    message_id: str
    timestamp: datetime
    sender: str
    to: str
    chat_type: str
    bodies: tuple[Body | UnknownBody, ...] = ()
    ext: Mapping[str, Any] = attrs.field(factory=dict)
    direction: str | None = None


@final
@attrs.frozen(kw_only=True)
class RecallResult:
    """The outcome of a recall.

    ``recalled`` is True when the service answered ``"yes"``; otherwise
    ``reason`` is the service's reason, one of the documented
    ``"not_found msg"`` (expired or already recalled), ``"exceed recall time
    limit"`` (past the 2 minute window), ``"can't find msg to"`` (no such
    recipient) or ``"internal error"``.
    """

    message_id: str
    recalled: bool
    reason: str | None = None
    sender: str | None = None
    to: str | None = None
    chat_type: str | None = None


@final
@attrs.frozen
class ImportedMessage:
    """The id the service gave to an imported message."""

    message_id: str


@final
@attrs.frozen
class Broadcast:
    """A broadcast the service accepted: its ``id`` (a broadcast has no message id) and
    ``to``, who it went to (``"users"``, ``"online_users"`` or ``"rooms"``)."""

    id: str
    to: str


@final
@attrs.frozen(kw_only=True)
class Recall:
    """One message to recall with :meth:`AgoraChatClient.recall_messages`.

    As the arguments of :meth:`AgoraChatClient.recall_message`, plus ``sync_device``:
    tell the sender's other online devices of a one-to-one recall (the service's default
    is to).
    """

    message_id: str
    to: str
    chat_type: ChatType
    sender: str | None = None
    force: bool = False
    sync_device: bool | None = None


@final
@attrs.frozen(kw_only=True)
class BatchRecallResult:
    """What happened to every message of :meth:`AgoraChatClient.recall_messages`.

    Every message id is in exactly one of:

    - ``results``: the service answered for it; ``RecallResult.recalled`` says whether
      it was recalled, ``reason`` why not;
    - ``failed``: its request was refused (the error), so it was not recalled;
    - ``unknown``: its request may or may not have been processed.
    """

    results: Mapping[str, RecallResult] = attrs.field(factory=dict, converter=_freeze_mapping)
    failed: Mapping[str, AgoraChatError] = attrs.field(factory=dict, converter=_freeze_mapping)
    unknown: Mapping[str, OutcomeUnknownError] = attrs.field(
        factory=dict, converter=_freeze_mapping
    )

    @property
    def recalled(self) -> list[str]:
        """The ids of the messages recalled."""
        return [message_id for message_id, r in self.results.items() if r.recalled]
