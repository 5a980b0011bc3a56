"""Changing messages already sent, and reading what the service holds of them: edits,
batch recalls, one-way deletion of roaming messages, offline message status
(``beyond-seeds/message_modify.md``, ``message_recall_batch.md``,
``message_delete_roaming.md``, ``offline_messages.md``).

Each call is one request paced by the ``other`` limit (100 a second per app, as
``limitationapi.md`` gives for each), except where a page allows more targets than one
request carries: a batch recall sends 30 messages a request, a deletion by id 50 ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, cast
from urllib.parse import quote

from ._converter import (
    BatchRecallEntry,
    BatchRecallRequest,
    BatchRecallResponse,
    NewMessage,
    OfflineCountResponse,
    OfflineStatusResponse,
    RewriteRequest,
    RewriteResponse,
    RoamingResponse,
)
from ._exceptions import AgoraChatError, OutcomeUnknownError, ValidationError
from ._models import (
    BatchRecallResult,
    CmdBody,
    CustomBody,
    EditableType,
    OfflineStatus,
    Recall,
    RecallResult,
    TextBody,
)
from ._pipeline import Pipeline
from ._request import Request
from ._responses import unreadable
from ._validate import check_choice, check_id, check_mapping, to_millis

__all__ = ["RECALLS_PER_REQUEST", "ROAMING_IDS_PER_REQUEST", "MessageManagement"]

#: The documented cap on messages per batch recall.
RECALLS_PER_REQUEST: Final = 30
#: The documented cap on message ids per roaming deletion.
ROAMING_IDS_PER_REQUEST: Final = 50
_EDITABLE_TYPES: Final = ("img", "audio", "video", "file", "loc")
_CHAT_TYPES: Final = ("chat", "groupchat", "chatroom")


def _user_path(user: str) -> str:
    return quote(check_id("user", user), safe="")


def _notify(notify: bool | None) -> dict[str, str]:
    return {} if notify is None else {"isNotify": "true" if notify else "false"}


class MessageManagement:
    """Edits, batch recalls, roaming deletions and offline status, of
    :class:`AgoraChatClient`."""

    _pipeline: Pipeline

    # -- edits -----------------------------------------------------------------------------------

    async def edit_message(
        self,
        message_id: str,
        new: TextBody | CustomBody | EditableType,
        *,
        ext: Mapping[str, Any] | None = None,
        merge_ext: bool = True,
        editor: str | None = None,
    ) -> None:
        """Edit a message the service stores (``PUT /messages/rewrite/{msg_id}``).

        A text message takes a new :class:`TextBody` (its ``msg``), a custom message a
        new :class:`CustomBody` (its ``custom_event`` and ``custom_exts``); the other
        types keep their body and change their ``ext`` only: pass the type
        (``"img"``, ``"audio"``, ``"video"``, ``"file"`` or ``"loc"``) and ``ext``.
        A command message cannot be edited. A message can be edited 10 times, at any
        age while the service stores it (its storage time starts over). The feature
        must be enabled for the app.

        An edit is not retried after a failure that may have been processed (each
        counts towards the 10).

        Args:
            message_id: the id of the message (digits).
            new: the new body, or the type of a message whose ``ext`` alone changes.
            ext: the new extension fields.
            merge_ext: merge ``ext`` into the message's (the default) or replace it.
            editor: the user who edits (wire ``user``).

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
            EditLimitError: the message was edited as often as allowed.
            FeatureNotEnabledError: edits are not enabled for the app.
            NotFoundError: no such message is stored (or it expired).
            ConflictError: another edit of the message ran at the same time.
            OutcomeUnknownError: the edit may or may not have been made.
            APIError: another refusal.
        """
        message_id = check_id("message_id", message_id)
        if not message_id.isdigit():
            raise ValidationError("message_id", f"must be digits, got {message_id!r}")
        if isinstance(new, TextBody):
            message = NewMessage(type="txt", msg=new.msg)
        elif isinstance(new, CustomBody):
            message = NewMessage(
                type="custom", custom_event=new.custom_event, custom_exts=new.custom_exts
            )
        elif isinstance(new, CmdBody) or str(new) == "cmd":
            raise ValidationError("new", "a command message cannot be edited")
        else:
            message = NewMessage(type=check_choice("new", new, _EDITABLE_TYPES))
            if ext is None:
                raise ValidationError(
                    "ext", f"is required: a {new!r} message can change its ext only"
                )
        request = RewriteRequest(
            new_msg=message,
            user=None if editor is None else check_id("editor", editor),
            new_ext=None if ext is None else check_mapping("ext", ext),
            is_combine_ext=None if ext is None else bool(merge_ext),
        )
        await self._pipeline.request_as(
            # Each edit counts towards the message's 10: not repeated when in doubt.
            Request(
                method="PUT",
                path=f"/messages/rewrite/{quote(message_id, safe='')}",
                json=request,
                idempotent=False,
            ),
            RewriteResponse,
        )

    # -- batch recall ----------------------------------------------------------------------------

    async def recall_messages(
        self, recalls: Iterable[Recall], *, extension_info: str | None = None
    ) -> BatchRecallResult:
        """Recall several messages (``POST /messages/batch_recall``), 30 a request.

        Failures do not raise: every message ends in exactly one of ``results`` (the
        service answered for it: recalled or not, and why), ``failed`` or ``unknown``.

        Args:
            recalls: the messages, each a :class:`Recall`.
            extension_info: the recall's extension information
                (wire ``recallMessageExtensionInfo``).

        Raises:
            ValidationError: an argument is invalid (a message id named twice among
                them); nothing was sent.
        """
        entries: list[BatchRecallEntry] = []
        seen: set[str] = set()
        for index, recall in enumerate(recalls):
            if not isinstance(recall, Recall):
                raise ValidationError(f"recalls[{index}]", f"must be a Recall, got {recall!r}")
            message_id = check_id(f"recalls[{index}].message_id", recall.message_id)
            if message_id in seen:
                raise ValidationError(f"recalls[{index}]", f"names {message_id!r} again")
            seen.add(message_id)
            entries.append(
                BatchRecallEntry(
                    msg_id=message_id,
                    to=check_id(f"recalls[{index}].to", recall.to),
                    chat_type=check_choice(
                        f"recalls[{index}].chat_type", recall.chat_type, _CHAT_TYPES
                    ),
                    force=bool(recall.force),
                    sender=None
                    if recall.sender is None
                    else check_id(f"recalls[{index}].sender", recall.sender),
                    sync_device=recall.sync_device,
                )
            )
        if not entries:
            raise ValidationError("recalls", "names no message")
        if extension_info is not None:
            check_id("extension_info", extension_info)
        results: dict[str, RecallResult] = {}
        failed: dict[str, AgoraChatError] = {}
        unknown: dict[str, OutcomeUnknownError] = {}
        for start in range(0, len(entries), RECALLS_PER_REQUEST):
            batch = entries[start : start + RECALLS_PER_REQUEST]
            ids = [entry.msg_id for entry in batch]
            request = BatchRecallRequest(msgs=batch, extension_info=extension_info)
            try:
                answer = await self._pipeline.request_as(
                    Request(
                        method="POST",
                        path="/messages/batch_recall",
                        json=request,
                        idempotent=False,
                    ),
                    BatchRecallResponse,
                )
            except OutcomeUnknownError as exc:
                unknown.update(dict.fromkeys(ids, exc))
                continue
            except ValidationError:
                raise
            except AgoraChatError as exc:
                failed.update(dict.fromkeys(ids, exc))
                continue
            answered = {entry.message_id: entry for entry in answer.data}
            for message_id in ids:
                data = answered.get(message_id)
                if data is None:
                    unknown[message_id] = OutcomeUnknownError(
                        f"the batch recall was answered without an outcome for {message_id!r}"
                    )
                    continue
                recalled = data.recalled == "yes"
                results[message_id] = RecallResult(
                    message_id=message_id,
                    recalled=recalled,
                    reason=None if recalled else data.recalled,
                    sender=data.sender,
                    to=data.to,
                    chat_type=data.chat_type,
                )
        return BatchRecallResult(results=results, failed=failed, unknown=unknown)

    # -- roaming messages ------------------------------------------------------------------------

    async def delete_roaming_messages(
        self,
        user: str,
        conversation: str,
        message_ids: Iterable[str],
        *,
        chat_type: Literal["chat", "groupchat"],
        notify: bool | None = None,
    ) -> None:
        """Delete roaming (server-stored) messages for one user only, by id.

        ``DELETE /rest/message/roaming/chat/user/{user}`` (``chat_type="chat"``:
        *conversation* is the peer user) or ``.../group/user/{user}`` (``"groupchat"``:
        the group), 50 ids a request. Others in the conversation keep them. Deleting
        what is deleted changes nothing, so failures that may have been processed are
        retried.

        Args:
            user: whose roaming messages are deleted.
            conversation: the peer user id, or the group id.
            message_ids: the messages' ids.
            chat_type: ``"chat"`` or ``"groupchat"``.
            notify: tell the user's online devices (the service's default is to).

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
            FeatureNotEnabledError: roaming messages are not enabled for the app.
            APIError: the request was refused (the ids of earlier requests, 50 each,
                were deleted).
        """
        chat_type = check_choice("chat_type", chat_type, ("chat", "groupchat"))
        ids = [check_id(f"message_ids[{i}]", m) for i, m in enumerate(message_ids)]
        if not ids:
            raise ValidationError("message_ids", "names no message")
        peer = "userId" if chat_type == "chat" else "groupId"
        path = f"/rest/message/roaming/{_kind(chat_type)}/user/{_user_path(user)}"
        for start in range(0, len(ids), ROAMING_IDS_PER_REQUEST):
            params = {
                peer: check_id("conversation", conversation),
                "msgIdList": ",".join(ids[start : start + ROAMING_IDS_PER_REQUEST]),
                **_notify(notify),
            }
            await self._roaming("DELETE", path, params)

    async def delete_roaming_messages_before(
        self,
        user: str,
        conversation: str,
        before: datetime | int,
        *,
        chat_type: Literal["chat", "groupchat", "chatroom"],
        notify: bool | None = None,
    ) -> None:
        """Delete a conversation's roaming messages up to a time, for one user only.

        ``DELETE /rest/message/roaming/chat/user/{user}/time`` (``chat_type="chat"``) or
        ``.../group/user/{user}/time`` (a group or a chat room). The messages at and
        before *before* go. (The limits page lists these as ``POST``; the endpoint's own
        page says ``DELETE``, which this follows.)

        Args:
            user: whose roaming messages are deleted.
            conversation: the peer user, group or room id.
            before: an aware ``datetime`` or Unix milliseconds.
            chat_type: ``"chat"``, ``"groupchat"`` or ``"chatroom"``.
            notify: tell the user's online devices (the service's default is to).

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
            FeatureNotEnabledError: roaming messages are not enabled for the app.
            APIError: the request was refused.
        """
        chat_type = check_choice("chat_type", chat_type, _CHAT_TYPES)
        peer = "userId" if chat_type == "chat" else "groupId"
        params = {
            peer: check_id("conversation", conversation),
            "delTime": str(to_millis("before", before)),
            **_notify(notify),
        }
        path = f"/rest/message/roaming/{_kind(chat_type)}/user/{_user_path(user)}/time"
        await self._roaming("DELETE", path, params)

    async def delete_all_roaming_messages(self, user: str) -> None:
        """Delete every roaming message of one user, and so their conversation list
        (``POST /rest/message/roaming/user/{user}/delete/all``); others keep theirs.

        Raises:
            ValidationError: ``user`` is invalid; nothing was sent.
            FeatureNotEnabledError: roaming messages are not enabled for the app.
            APIError: the request was refused.
        """
        path = f"/rest/message/roaming/user/{_user_path(user)}/delete/all"
        await self._roaming("POST", path, None)

    async def _roaming(self, method: str, path: str, params: dict[str, str] | None) -> None:
        await self._pipeline.request_as(
            # Deleting what is deleted changes nothing: a repeat is safe.
            Request(method=method, path=path, params=params, idempotent=True),
            RoamingResponse,
        )

    # -- offline messages ------------------------------------------------------------------------

    async def get_offline_message_count(self, user: str) -> int:
        """How many offline messages wait for *user*
        (``GET /users/{user}/offline_msg_count``).

        Raises:
            ValidationError: ``user`` is invalid.
            UnexpectedResponseError: the answer has no count for the user.
            APIError: the request was refused.
        """
        user = check_id("user", user)
        request = Request(
            method="GET", path=f"/users/{_user_path(user)}/offline_msg_count", idempotent=True
        )
        answer = await self._pipeline.request_as(request, OfflineCountResponse)
        if user not in answer.data:
            raise unreadable(request, OfflineCountResponse.UNREADABLE, 200, str(answer.data))
        return answer.data[user]

    async def get_offline_message_status(self, user: str, message_id: str) -> OfflineStatus:
        """Whether an offline message reached *user* yet:
        ``"delivered"`` or ``"undelivered"`` (``GET /users/{user}/offline_msg_status/{id}``).

        Raises:
            ValidationError: an argument is invalid.
            UnexpectedResponseError: the answer has no known status for the message.
            APIError: the request was refused.
        """
        message_id = check_id("message_id", message_id)
        path = f"/users/{_user_path(user)}/offline_msg_status/{quote(message_id, safe='')}"
        request = Request(method="GET", path=path, idempotent=True)
        answer = await self._pipeline.request_as(request, OfflineStatusResponse)
        status = answer.data.get(message_id)
        if status not in ("delivered", "undelivered"):
            raise unreadable(request, OfflineStatusResponse.UNREADABLE, 200, str(answer.data))
        return cast(OfflineStatus, status)


def _kind(chat_type: str) -> str:
    return "chat" if chat_type == "chat" else "group"
