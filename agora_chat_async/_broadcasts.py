"""Broadcasts: one call that reaches every user of an app, its online users, or every
active chat room (``beyond-seeds/broadcast_*.md``).

A broadcast's quotas are counted over half hours and days (``_call_quotas.py``), so a
broadcast is reserved under them before it is sent (in Redis with a
:class:`RedisLimiter`: every process and every restart sees it), and never sent twice by
this library: nothing that may have reached the service is retried, and a rate-limit
refusal is raised at once. A reservation is given back only when the request certainly
never reached the service.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

from ._batching import check_content_size
from ._call_quotas import Reservation
from ._converter import BroadcastMessage, BroadcastRequest, BroadcastResponse, body_type, dumps
from ._exceptions import (
    ClientClosedError,
    ConnectError,
    LimiterStoreError,
    LimiterUnavailableError,
    QuotaExhaustedError,
    ServerError,
    ValidationError,
)
from ._limits import Limiter
from ._models import Body, Broadcast, RoomMessageLevel
from ._pipeline import Pipeline
from ._rates import BROADCAST_KINDS, BroadcastKind
from ._request import Request
from ._validate import check_choice, check_id, check_mapping

__all__ = ["Broadcasts"]

_PATHS: Final[Mapping[BroadcastKind, str]] = {
    "users": "/messages/broadcast",
    "online_users": "/messages/users/broadcast",
    "rooms": "/messages/chatrooms/broadcast",
}
_LEVELS: Final = ("high", "normal", "low")


class Broadcasts:
    """The broadcast endpoint of :class:`AgoraChatClient`."""

    _pipeline: Pipeline
    _limiter: Limiter

    async def broadcast(
        self,
        to: BroadcastKind,
        body: Body,
        *,
        sender: str | None = None,
        ext: Mapping[str, Any] | None = None,
        level: RoomMessageLevel | None = None,
    ) -> Broadcast:
        """Broadcast one message to every user of the app, its online users, or every
        active chat room.

        ``to="users"`` (``POST /messages/broadcast``): every user, stored for offline
        ones; 1 per 30 minutes and 3 a day by default. ``"online_users"``
        (``POST /messages/users/broadcast``): online users only; 1 a minute, 50 a day.
        ``"rooms"`` (``POST /messages/chatrooms/broadcast``): every chat room with a
        member that has ever had a message; 1 a second, 10 a minute, 100 a day. The
        feature must be enabled for the app (all users and rooms need the Ultimate plan).

        The call is reserved under ``RateLimits.broadcasts`` first: it waits up to
        ``BroadcastLimits.max_wait`` seconds for room, and fails at once beyond that. It
        is sent at most once: no failure after which it may have been processed is
        retried, and a rate-limit refusal is raised, not waited out.

        Args:
            to: ``"users"``, ``"online_users"`` or ``"rooms"``.
            body: the message, any body type.
            sender: the ``from`` user; the service uses ``admin`` when omitted.
            ext: the message's extension fields.
            level: rooms only: ``"high"``, ``"normal"`` or ``"low"``
                (``chatroom_msg_level``).

        Raises:
            ValidationError: an argument is invalid; nothing was sent.
            LimitReachedError: the quota has no room within ``max_wait``; its
                ``available_at`` says when it could be sent. Nothing was sent.
            FeatureNotEnabledError: broadcasts are not enabled for the app.
            QuotaExhaustedError: the service refused it for its daily limit (the
                limiter then counts the day as spent, in every process).
            RateLimitedError: the service refused it for its per-minute limits.
            OutcomeUnknownError: it may or may not have been broadcast; do not
                broadcast again before you know.
            APIError: another refusal.
        """
        kind = check_choice("to", to, BROADCAST_KINDS)
        if level is not None:
            check_choice("level", level, _LEVELS)
            if kind != "rooms":
                raise ValidationError("level", "applies to broadcasts to chat rooms only")
        body_type(body)
        request = BroadcastRequest(
            msg=BroadcastMessage(body=body),
            target_type="users" if kind == "users" else None,
            sender=None if sender is None else check_id("sender", sender),
            ext=None if ext is None else check_mapping("ext", ext),
            chatroom_msg_level=level,
        )
        check_content_size(len(dumps(request.msg)) + len(dumps(request.ext or {})))
        quotas = self._limiter.call_quotas
        reservation = await quotas.reserve(kind)
        call = Request(
            method="POST",
            path=_PATHS[kind],
            json=request,
            # Never twice: a broadcast that may have been made is not made again.
            idempotent=False,
            retry_refused=False,
        )
        try:
            answer = await self._pipeline.request_as(call, BroadcastResponse)
        except QuotaExhaustedError:
            await quotas.exhaust(kind)  # the service's day is spent: every process's too
            raise
        except (ConnectError, ClientClosedError, LimiterUnavailableError, LimiterStoreError):
            await _give_back(self._limiter, reservation)  # certainly never sent
            raise
        except ServerError as error:
            if error.status_code == 503:  # documented as not processed
                await _give_back(self._limiter, reservation)
            raise
        return Broadcast(id=answer.id, to=kind)


async def _give_back(limiter: Limiter, reservation: Reservation) -> None:
    """Give *reservation* back; a store that fails to take it back keeps it (the safe way)."""
    with contextlib.suppress(LimiterUnavailableError, LimiterStoreError):
        await limiter.call_quotas.give_back(reservation)
