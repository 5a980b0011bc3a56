"""The one place where Python names meet wire names.

Public classes use Pythonic field names; the service uses ``from``,
``customEvent``, ``share-secret``, ``chatroom_msg_level`` and friends. This
module holds the request and response shapes as they travel, and one
``cattrs`` converter, :data:`converter`, that maps between the two. No endpoint
builds or reads a JSON dictionary by hand.

Unstructuring omits fields that are ``None``: the service treats a missing
field and a ``null`` differently (``ext: null`` is refused), so ``None`` always
means "do not send". (Technically cattrs omits fields equal to their default, so
request shapes give a default only where it is ``None``.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._exceptions import ValidationError
from ._models import (
    AudioBody,
    Body,
    CmdBody,
    CustomBody,
    FileBody,
    HistoryRecord,
    ImageBody,
    ImageSize,
    LocationBody,
    TextBody,
    UnknownBody,
    VideoBody,
)

__all__ = [
    "BODY_TYPES",
    "BatchRecallEntry",
    "BatchRecallRequest",
    "BatchRecallResponse",
    "BroadcastMessage",
    "BroadcastRequest",
    "BroadcastResponse",
    "DeleteConversationRequest",
    "DeleteConversationResponse",
    "HistoryLinkResponse",
    "ImportMessageRequest",
    "ImportResponse",
    "MembersMessageRequest",
    "MessageIdsResponse",
    "NewMessage",
    "OfflineCountResponse",
    "OfflineStatusResponse",
    "RecallData",
    "RecallRequest",
    "RecallResponse",
    "RewriteRequest",
    "RewriteResponse",
    "RoamingResponse",
    "SendMessageRequest",
    "TokenRequest",
    "TokenResponse",
    "UploadEntity",
    "UploadResponse",
    "converter",
    "dumps",
    "encode_json",
    "structure_body",
]

#: Body classes by their wire ``type``.
BODY_TYPES: Final[Mapping[str, type[Body]]] = {
    cls.type: cls
    for cls in (
        TextBody,
        ImageBody,
        AudioBody,
        VideoBody,
        FileBody,
        LocationBody,
        CmdBody,
        CustomBody,
    )
}


# --- wire shapes of requests ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SendMessageRequest:
    """``POST /messages/users|chatgroups|chatrooms``."""

    to: list[str]
    type: str
    body: Body
    sender: str | None = None
    sync_device: bool | None = None
    routetype: str | None = None
    ext: Mapping[str, Any] | None = None
    msg_timestamp: int | None = None
    chatroom_msg_level: str | None = None


@attrs.frozen(kw_only=True)
class RecallRequest:
    """``POST /messages/msg_recall``."""

    msg_id: str
    to: str
    chat_type: str
    force: bool
    sender: str | None = None


@attrs.frozen(kw_only=True)
class DeleteConversationRequest:
    """``DELETE /users/{username}/user_channel``."""

    channel: str
    type: str
    delete_roam: bool


@attrs.frozen(kw_only=True)
class ImportMessageRequest:
    """``POST /messages/users/import`` and ``/messages/chatgroups/import``."""

    sender: str
    target: str
    type: str
    body: Body
    is_ack_read: bool | None = None
    msg_timestamp: int | None = None
    need_download: bool | None = None


@attrs.frozen(kw_only=True)
class MembersMessageRequest:
    """``POST /messages/chatgroups/users`` and ``/messages/chatrooms/users``: one group or
    room (``to`` holds one id), some of its members (``users``, at most 20)."""

    to: list[str]
    type: str
    body: Body
    users: list[str]
    sender: str | None = None
    ext: Mapping[str, Any] | None = None
    chatroom_msg_level: str | None = None


@attrs.frozen(kw_only=True)
class BroadcastMessage:
    """A broadcast's ``msg``: its body's fields and its ``type``, side by side."""

    body: Body


@attrs.frozen(kw_only=True)
class BroadcastRequest:
    """``POST /messages/broadcast``, ``/messages/users/broadcast`` and
    ``/messages/chatrooms/broadcast``."""

    msg: BroadcastMessage
    target_type: str | None = None
    sender: str | None = None
    ext: Mapping[str, Any] | None = None
    chatroom_msg_level: str | None = None


@attrs.frozen(kw_only=True)
class NewMessage:
    """``new_msg`` of an edit: a text's ``msg``, a custom message's event and exts, or
    only the ``type`` (the other types change their ``ext`` alone)."""

    type: str
    msg: str | None = None
    custom_event: str | None = None
    custom_exts: Mapping[str, str] | None = None


@attrs.frozen(kw_only=True)
class RewriteRequest:
    """``PUT /messages/rewrite/{msg_id}``."""

    new_msg: NewMessage
    user: str | None = None
    new_ext: Mapping[str, Any] | None = None
    is_combine_ext: bool | None = None


@attrs.frozen(kw_only=True)
class BatchRecallEntry:
    """One message of a batch recall."""

    msg_id: str
    to: str
    chat_type: str
    force: bool
    sender: str | None = None
    sync_device: bool | None = None


@attrs.frozen(kw_only=True)
class BatchRecallRequest:
    """``POST /messages/batch_recall``: at most 30 messages."""

    msgs: list[BatchRecallEntry]
    extension_info: str | None = None


@attrs.frozen(kw_only=True)
class TokenRequest:
    """``POST /token`` with the client-credentials grant."""

    grant_type: str
    client_id: str
    client_secret: str = attrs.field(repr=False)
    ttl: int | None = None


# --- wire shapes of responses -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class UploadEntity:
    """One element of ``entities`` in the upload response."""

    uuid: str
    share_secret: str | None = attrs.field(default=None, repr=False)
    type: str = "chatfile"


@attrs.frozen(kw_only=True)
class TokenResponse:
    """The token endpoint's answer; ``expires_in`` is in seconds."""

    UNREADABLE: ClassVar[str] = "the token response has no access_token/expires_in"
    access_token: str = attrs.field(repr=False)
    expires_in: int
    application: str | None = None


@attrs.frozen(kw_only=True)
class RecallData:
    """``data`` of a recall response, or one element of its ``msgs``."""

    message_id: str
    recalled: str
    sender: str | None = None
    to: str | None = None
    chat_type: str | None = None


@attrs.frozen(kw_only=True)
class UploadResponse:
    """``POST /chatfiles``: the uploaded file is ``entities[0]``."""

    UNREADABLE: ClassVar[str] = "the upload response has no entities[0].uuid"
    entities: tuple[UploadEntity, ...] = attrs.field(validator=attrs.validators.min_len(1))


@attrs.frozen(kw_only=True)
class HistoryLinkResponse:
    """``GET /chatmessages/{hour}``: ``data`` is ``{"url": ...}`` or a list of one (the
    Chinese and English pages differ)."""

    UNREADABLE: ClassVar[str] = "the history response has no data.url"
    url: str = attrs.field(validator=attrs.validators.min_len(1))


@attrs.frozen(kw_only=True)
class DeletedConversation:
    """``data`` of the conversation deletion's answer."""

    result: str = attrs.field(validator=attrs.validators.in_(("ok",)))


@attrs.frozen(kw_only=True)
class DeleteConversationResponse:
    """``DELETE /users/{username}/user_channel``: confirmed by ``data.result == "ok"``."""

    UNREADABLE: ClassVar[str] = "the service did not confirm the deletion with result 'ok'"
    data: DeletedConversation


@attrs.frozen(kw_only=True)
class ImportResponse:
    """``POST /messages/{users|chatgroups}/import``: the imported message's ``data.msg_id``."""

    UNREADABLE: ClassVar[str] = "the import answer has no data.msg_id"
    message_id: str


@attrs.frozen(kw_only=True)
class RecallResponse:
    """``POST /messages/msg_recall``: the outcome in ``data``, or one per message in
    ``msgs`` (in ``data`` or beside it, as the pages' examples differ)."""

    UNREADABLE: ClassVar[str] = "the recall answer has no 'recalled' field"
    entries: tuple[RecallData, ...] = attrs.field(validator=attrs.validators.min_len(1))
    #: The outcome was ``data`` itself, for whichever message was recalled.
    direct: bool = False

    def entry(self, message_id: str) -> RecallData | None:
        """The outcome for *message_id*."""
        if self.direct:
            return self.entries[0]
        return next((e for e in self.entries if e.message_id == message_id), None)


@attrs.frozen(kw_only=True)
class MessageIdsResponse:
    """``data`` of a send: target -> message id (the group or room of a members' send)."""

    UNREADABLE: ClassVar[str] = "the answer has no data of target -> message id"
    data: Mapping[str, str] = attrs.field(validator=attrs.validators.min_len(1))


@attrs.frozen(kw_only=True)
class BroadcastResponse:
    """A broadcast's answer: its ``data.id`` (a broadcast has no message id)."""

    UNREADABLE: ClassVar[str] = "the broadcast answer has no data.id"
    id: str


@attrs.frozen(kw_only=True)
class RewriteResponse:
    """An edit's answer: ``data`` is ``"success"``."""

    UNREADABLE: ClassVar[str] = "the service did not confirm the edit with data 'success'"
    data: str = attrs.field(validator=attrs.validators.in_(("success",)))


@attrs.frozen(kw_only=True)
class BatchRecallResponse:
    """``POST /messages/batch_recall``: one outcome per message in ``data``."""

    UNREADABLE: ClassVar[str] = "the batch recall answer has no list of outcomes in data"
    data: tuple[RecallData, ...]


@attrs.frozen(kw_only=True)
class RoamingResponse:
    """A roaming deletion's answer: ``requestStatusCode`` is ``"ok"``."""

    UNREADABLE: ClassVar[str] = "the service did not confirm with requestStatusCode 'ok'"
    status: str = attrs.field(validator=attrs.validators.in_(("ok",)))


@attrs.frozen(kw_only=True)
class OfflineCountResponse:
    """``GET /users/{u}/offline_msg_count``: ``data`` is user -> count (a number or its text)."""

    UNREADABLE: ClassVar[str] = "the answer has no data of user -> offline message count"
    data: Mapping[str, int]


@attrs.frozen(kw_only=True)
class OfflineStatusResponse:
    """``GET /users/{u}/offline_msg_status/{id}``: ``data`` is message id -> status."""

    UNREADABLE: ClassVar[str] = "the answer has no data of message id -> delivery status"
    data: Mapping[str, str]


#: Python field name -> wire name, per class. The only renames in the library.
_RENAMES: Final[Mapping[type, Mapping[str, str]]] = {
    CustomBody: {"custom_event": "customEvent", "custom_exts": "customExts"},
    SendMessageRequest: {"sender": "from"},
    RecallRequest: {"sender": "from"},
    ImportMessageRequest: {"sender": "from"},
    MembersMessageRequest: {"sender": "from"},
    BroadcastRequest: {"sender": "from"},
    NewMessage: {"custom_event": "customEvent", "custom_exts": "customExts"},
    BatchRecallEntry: {"sender": "from"},
    BatchRecallRequest: {"extension_info": "recallMessageExtensionInfo"},
    RoamingResponse: {"status": "requestStatusCode"},
    UploadEntity: {"share_secret": "share-secret"},
    RecallData: {"message_id": "msg_id", "sender": "from", "chat_type": "chattype"},
}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)

    def renames(cls: type) -> dict[str, Any]:
        return {name: override(rename=wire) for name, wire in _RENAMES.get(cls, {}).items()}

    # Requests are only ever written, responses only ever read, bodies both ways.
    both: tuple[type, ...] = (ImageSize, *BODY_TYPES.values())
    written: tuple[type, ...] = (
        SendMessageRequest,
        RecallRequest,
        DeleteConversationRequest,
        ImportMessageRequest,
        TokenRequest,
        MembersMessageRequest,
        BroadcastRequest,
        NewMessage,
        RewriteRequest,
        BatchRecallEntry,
        BatchRecallRequest,
    )
    read: tuple[type, ...] = (
        UploadEntity,
        UploadResponse,
        TokenResponse,
        RecallData,
        DeletedConversation,
        DeleteConversationResponse,
        MessageIdsResponse,
        RewriteResponse,
        RoamingResponse,
        OfflineCountResponse,
        OfflineStatusResponse,
    )
    # Before the requests' hooks are made: they look up this one as they are made.
    conv.register_unstructure_hook(
        BroadcastMessage, lambda msg: {"type": body_type(msg.body), **conv.unstructure(msg.body)}
    )
    for cls in both + written:
        conv.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **renames(cls))
        )
    for cls in both + read:
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **renames(cls)))
    conv.register_structure_hook(HistoryRecord, lambda obj, _: _structure_history(obj))
    conv.register_structure_hook(HistoryLinkResponse, lambda obj, _: _history_link(obj))
    conv.register_structure_hook(ImportResponse, lambda obj, _: _imported(obj))
    conv.register_structure_hook(RecallResponse, lambda obj, _: _recall(conv, obj))
    conv.register_structure_hook(BroadcastResponse, lambda obj, _: _broadcast(obj))
    conv.register_structure_hook(BatchRecallResponse, lambda obj, _: _batch_recall(conv, obj))
    return conv


def _an_id(value: object, what: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TypeError(f"{what} is not an id")
    return str(value)


def _broadcast(obj: Mapping[str, Any]) -> BroadcastResponse:
    return BroadcastResponse(id=_an_id(obj["data"]["id"], "data.id"))


def _batch_recall(conv: cattrs.Converter, obj: Mapping[str, Any]) -> BatchRecallResponse:
    data = obj["data"]
    if not isinstance(data, list):
        raise TypeError("data is not a list")
    return BatchRecallResponse(
        data=tuple(
            conv.structure({**entry, "msg_id": _an_id(entry["msg_id"], "msg_id")}, RecallData)
            for entry in data
        )
    )


def _history_link(obj: Mapping[str, Any]) -> HistoryLinkResponse:
    data = obj["data"]
    if isinstance(data, list):
        data = data[0]
    url = data["url"]
    if not isinstance(url, str):
        raise TypeError("data.url is not a string")
    return HistoryLinkResponse(url=url)


def _imported(obj: Mapping[str, Any]) -> ImportResponse:
    return ImportResponse(message_id=_an_id(obj["data"]["msg_id"], "data.msg_id"))


def _recall(conv: cattrs.Converter, obj: Mapping[str, Any]) -> RecallResponse:
    data = obj.get("data", obj)
    if isinstance(data, Mapping) and "recalled" in data:
        return RecallResponse(entries=(conv.structure(data, RecallData),), direct=True)
    entries: list[RecallData] = []
    for holder in (data, obj):
        messages = holder.get("msgs") if isinstance(holder, Mapping) else None
        for entry in messages if isinstance(messages, list) else ():
            if isinstance(entry, Mapping) and "recalled" in entry and "msg_id" in entry:
                entries.append(
                    conv.structure({**entry, "msg_id": str(entry["msg_id"])}, RecallData)
                )
    return RecallResponse(entries=tuple(entries))


def body_type(body: object) -> str:
    """The wire ``type`` of a public body.

    Raises:
        ValidationError: *body* is not one of the public body classes.
    """
    kind = getattr(type(body), "type", None)
    if not isinstance(kind, str) or BODY_TYPES.get(kind) is not type(body):
        raise ValidationError(
            "body",
            f"must be TextBody, ImageBody, AudioBody, VideoBody, FileBody, "
            f"LocationBody, CmdBody or CustomBody; got {type(body).__name__}",
        )
    return kind


def structure_body(data: Mapping[str, Any]) -> Body | UnknownBody:
    """Build a typed body from its wire form (which carries its ``type``).

    A body of an unknown type, or one that does not match its type's documented
    fields, becomes an :class:`UnknownBody` with all its fields: a history
    record is never lost because one body is odd.
    """
    fields = dict(data)
    kind = str(fields.pop("type", ""))
    cls = BODY_TYPES.get(kind)
    if cls is None:
        return UnknownBody(type=kind, fields=fields)
    if "file_name" in fields and "filename" not in fields:
        # The English history page spells it ``file_name``, the Chinese one ``filename``.
        fields["filename"] = fields.pop("file_name")
    if cls is LocationBody:
        fields.setdefault("addr", "")
    try:
        return converter.structure(fields, cls)
    except (cattrs.BaseValidationError, ValidationError, TypeError, ValueError):
        return UnknownBody(type=kind, fields=fields)


def _structure_history(obj: Any) -> HistoryRecord:
    payload = obj.get("payload") or {}
    bodies = tuple(structure_body(body) for body in payload.get("bodies") or ())
    timestamp = datetime.fromtimestamp(int(obj["timestamp"]) / 1000, tz=UTC)
    return HistoryRecord(
        message_id=str(obj["msg_id"]),
        timestamp=timestamp,
        sender=str(obj.get("from", "")),
        to=str(obj.get("to", "")),
        chat_type=str(obj.get("chat_type", "")),
        bodies=bodies,
        ext=dict(payload.get("ext") or {}),
        direction=obj.get("direction"),
    )


#: The converter for every wire shape in this module and every public body.
converter: Final = _make_converter()


def encode_json(value: object) -> bytes:
    """Compact JSON, UTF-8, non-ASCII kept as is: how every request body is encoded.

    Size limits (5 KB per request, 3 KB for body plus ext) are measured on these bytes.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN or an infinity: Python's json would write ``NaN``
        raise ValidationError(
            "request body", f"{exc}: send finite numbers, or the value as a string"
        ) from None
    return text.encode("utf-8")


def dumps(obj: object) -> bytes:
    """The exact bytes sent for *obj*, a wire shape or public class (see :func:`encode_json`)."""
    return encode_json(converter.unstructure(obj))
