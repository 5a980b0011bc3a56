"""What the emulator records: deliveries, imports, stored files, and how it refuses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, final

import attrs

__all__ = [
    "CALL_RATE_REFUSAL",
    "ENDPOINTS",
    "FEATURES",
    "PLAN_REFUSAL",
    "QUOTA_REFUSAL",
    "BroadcastRecord",
    "Delivery",
    "Edit",
    "Imported",
    "Refusal",
    "RoamingDeletion",
    "StoredFile",
]

#: The endpoint names used for faults, request counts and refusals.
ENDPOINTS: Final = (
    "token",
    "users",
    "groups",
    "rooms",
    "upload",
    "download",
    "history",
    "history_file",
    "recall",
    "delete_conversation",
    "import_users",
    "import_groups",
    "broadcast_users",
    "broadcast_online_users",
    "broadcast_rooms",
    "group_members",
    "room_members",
    "rewrite",
    "batch_recall",
    "roaming",
    "offline",
)
#: The features an app may lack (``Emulator(features=...)``): each refused as documented.
FEATURES: Final = ("broadcasts", "rewrite", "roaming")


@final
@attrs.frozen
class Refusal:
    """How the emulator refuses a request over a limit: status and documented error body."""

    status: int
    error: str
    description: str


#: Message quotas (users/groups/rooms): 403 "message send reach limit".
QUOTA_REFUSAL: Final = Refusal(403, "forbidden_op", "message send reach limit")
#: Call rates: 429 ``reach_limit``.
CALL_RATE_REFUSAL: Final = Refusal(429, "reach_limit", "This request has reached api limit")
#: The plan's quota: 429 ``resource_limited``.
PLAN_REFUSAL: Final = Refusal(429, "resource_limited", "You have exceeded the limit of your plan")


@final
@attrs.frozen(kw_only=True)
class Delivery:
    """One message delivered to one recipient (a user, group or room).

    A message to selected members of a group or room is delivered to each member
    (``recipient``) in ``target``, the group or room, all under one message id.
    ``offline``: the recipient user was not online (``Emulator.online_users``).
    """

    message_id: str
    chat_type: str
    recipient: str
    sender: str
    type: str
    body: Mapping[str, Any]
    ext: Mapping[str, Any] | None
    timestamp: int
    """Unix milliseconds on the emulator's (possibly scaled) wall clock."""
    level: str | None = None
    online_only: bool = False
    sync_device: bool = False
    target: str | None = None
    offline: bool = False

    def key(self) -> str:
        """What makes two deliveries the same message to the same recipient."""
        return json.dumps(
            [self.chat_type, self.recipient, self.sender, self.type, self.body, self.ext],
            sort_keys=True,
        )


@final
@attrs.frozen(kw_only=True)
class Imported:
    """One imported message."""

    message_id: str
    chat_type: str
    sender: str
    target: str
    type: str
    body: Mapping[str, Any]
    is_ack_read: bool | None
    msg_timestamp: int | None
    need_download: bool | None


@attrs.define
class StoredFile:
    data: bytes
    thumbnail: bytes
    share_secret: str
    restricted: bool


@final
@attrs.frozen(kw_only=True)
class BroadcastRecord:
    """One broadcast: who it went to (``users``, ``online_users``, ``rooms``), what, and
    whom it reached when it was made (the users, online users or active rooms known)."""

    id: str
    to: str
    sender: str
    type: str
    msg: Mapping[str, Any]
    ext: Mapping[str, Any] | None
    level: str | None
    timestamp: int
    reached: tuple[str, ...]


@final
@attrs.frozen(kw_only=True)
class Edit:
    """One edit of a message, in order: what ``PUT /messages/rewrite/{id}`` sent."""

    user: str | None
    new_msg: Mapping[str, Any]
    new_ext: Mapping[str, Any] | None
    merge_ext: bool
    timestamp: int


@final
@attrs.frozen(kw_only=True)
class RoamingDeletion:
    """One one-way deletion of roaming messages: by ``ids``, ``before`` a time, or ``all``."""

    user: str
    how: str
    conversation: str | None = None
    chat: str | None = None
    message_ids: tuple[str, ...] = ()
    before: int | None = None
    notify: bool | None = None
