"""Messages to selected members of one group or chat room (``POST /messages/chatgroups/users``
and ``/messages/chatrooms/users``, ``beyond-seeds/message_group.md`` and
``message_chatroom.md``, "发送定向消息").

Only the members named see the message; it is not written to the conversation list nor
stored for roaming. A request names one group or room and at most 20 members, and the
service allows 100 such requests a second per app: the ``other`` limit. More members are
sent in requests of 20, a few at a time, and every member ends in exactly one bucket of
the :class:`SendResult`, like any send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import anyio
import attrs

from ._batching import check_content_size
from ._converter import MembersMessageRequest, body_type, dumps
from ._exceptions import AgoraChatError, OutcomeUnknownError, ValidationError
from ._models import Body, RoomMessageLevel, SendResult
from ._pipeline import Pipeline
from ._request import Request
from ._tasks import task_group
from ._validate import check_choice, check_id, check_mapping, recipients

__all__ = ["MEMBERS_PER_REQUEST", "MemberSends"]

#: The documented cap on members per request.
MEMBERS_PER_REQUEST: Final = 20
#: Requests of one call in flight at once.
_IN_FLIGHT: Final = 8
_PATHS: Final = {"group": "/messages/chatgroups/users", "room": "/messages/chatrooms/users"}
#: The endpoint family of each, in events and metrics.
_FAMILIES: Final = {"group": "group_members", "room": "room_members"}


class MemberSends:
    """The selected-members sends of :class:`AgoraChatClient`."""

    _pipeline: Pipeline

    async def send_group_members_message(
        self,
        group: str,
        members: str | Iterable[str],
        body: Body,
        *,
        sender: str | None = None,
        ext: Mapping[str, Any] | None = None,
    ) -> SendResult:
        """Send a message that only some members of a group see
        (``POST /messages/chatgroups/users``).

        Members are deduplicated and sent 20 a request (the documented cap), paced by
        the ``other`` limit (100 requests a second). Failures do not raise: every
        member ends in exactly one of ``message_ids`` (all of one request share the
        group's message id), ``failed`` or ``unknown``.

        Args:
            group: the group id.
            members: one member's user id or an iterable of them.
            body: the message.
            sender: the ``from`` user; the service uses ``admin`` when omitted.
            ext: the message's extension fields.

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
        """
        return await self._send_members(
            "group", group, members, body, sender=sender, ext=ext, level=None
        )

    async def send_room_members_message(
        self,
        room: str,
        members: str | Iterable[str],
        body: Body,
        *,
        sender: str | None = None,
        ext: Mapping[str, Any] | None = None,
        level: RoomMessageLevel | None = None,
    ) -> SendResult:
        """Send a message that only some members of a chat room see
        (``POST /messages/chatrooms/users``).

        As :meth:`send_group_members_message`, with an optional message ``level``
        (``"high"``, ``"normal"`` or ``"low"``; wire ``chatroom_msg_level``).

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
        """
        if level is not None:
            check_choice("level", level, ("high", "normal", "low"))
        return await self._send_members(
            "room", room, members, body, sender=sender, ext=ext, level=level
        )

    async def _send_members(
        self,
        kind: Literal["group", "room"],
        target: str,
        members: str | Iterable[str],
        body: Body,
        *,
        sender: str | None,
        ext: Mapping[str, Any] | None,
        level: str | None,
    ) -> SendResult:
        target = check_id(kind, target)
        users, duplicates = recipients("members", members)
        template = MembersMessageRequest(
            to=[target],
            type=body_type(body),
            body=body,
            users=[],
            sender=None if sender is None else check_id("sender", sender),
            ext=None if ext is None else check_mapping("ext", ext),
            chatroom_msg_level=level,
        )
        check_content_size(len(dumps(body)) + len(dumps(template.ext or {})))
        batches = [
            users[start : start + MEMBERS_PER_REQUEST]
            for start in range(0, len(users), MEMBERS_PER_REQUEST)
        ]
        results: list[SendResult] = []
        gate = anyio.Semaphore(_IN_FLIGHT)

        async def send(batch: list[str]) -> None:
            async with gate:
                sent = await self._send_batch(kind, template, batch)
                results.append(self._pipeline.settled(_FAMILIES[kind], sent))

        if len(batches) == 1:
            await send(batches[0])
        else:
            async with task_group() as group:
                for batch in batches:
                    group.start_soon(send, batch)
        result = SendResult(duplicates=duplicates)
        for part in results:
            result = result.merge(part)
        return result

    async def _send_batch(
        self, kind: str, template: MembersMessageRequest, batch: list[str]
    ) -> SendResult:
        request = attrs.evolve(template, users=batch)
        try:
            data = await self._pipeline.request(
                Request(method="POST", path=_PATHS[kind], json=request, idempotent=False)
            )
        except OutcomeUnknownError as exc:
            return SendResult(unknown=dict.fromkeys(batch, exc))
        except ValidationError:
            raise
        except AgoraChatError as exc:
            return SendResult(failed=dict.fromkeys(batch, exc))
        ids = data.get("data")
        message_id = ids.get(template.to[0]) if isinstance(ids, Mapping) else None
        if not isinstance(message_id, str | int) or isinstance(message_id, bool):
            unknown = OutcomeUnknownError(
                "the service accepted the send (HTTP 200) but its answer has no message id "
                f"for {template.to[0]!r}"
            )
            return SendResult(unknown=dict.fromkeys(batch, unknown))
        return SendResult(message_ids=dict.fromkeys(batch, str(message_id)))
