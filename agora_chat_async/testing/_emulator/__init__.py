"""The emulator: a strict, in-memory Agora Chat message API as an ASGI application.

By concern: ``_app`` (the :class:`Emulator`: configuration, state, inspection, the ASGI
entry point, authentication and quotas), ``_routes`` (the route table, compiled once),
``_handlers`` (one coroutine per endpoint; ``_management`` for the broadcasts, edits,
batch recalls, members' messages, roaming deletions and offline status), ``_rules`` (the
API's validation rules, the emulator's own copy), ``_history`` (signed links and
archives) and ``_state`` (what it records). The raw ASGI layer (``testing/_asgi.py``)
stays: the emulator needs the raw path (an id holding ``/``), a body capped before it is
buffered, and a connection dropped mid-response, which Starlette makes awkward.
"""

from __future__ import annotations

from ._app import Emulator
from ._state import (
    CALL_RATE_REFUSAL,
    ENDPOINTS,
    PLAN_REFUSAL,
    QUOTA_REFUSAL,
    BroadcastRecord,
    Delivery,
    Edit,
    Imported,
    Refusal,
    RoamingDeletion,
)

__all__ = [
    "CALL_RATE_REFUSAL",
    "ENDPOINTS",
    "PLAN_REFUSAL",
    "QUOTA_REFUSAL",
    "BroadcastRecord",
    "Delivery",
    "Edit",
    "Emulator",
    "Imported",
    "Refusal",
    "RoamingDeletion",
]
