"""What the emulator records: deliveries, imports, stored files, and how it refuses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, final

import attrs

__all__ = [
    "CALL_RATE_REFUSAL",
    "ENDPOINTS",
    "PLAN_REFUSAL",
    "QUOTA_REFUSAL",
    "Delivery",
    "Imported",
    "Refusal",
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
)


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
    """One message delivered to one recipient (a user, group or room)."""

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
