"""The emulator's route table, compiled once: which handler answers a method and a path.

Paths are matched segment by segment on the raw (percent-encoded) path and each segment
is decoded after the split, so an id holding ``/`` (``a%2Fb``) stays one segment, one
parameter. This is why the emulator keeps its own small router instead of Starlette's,
which routes on the decoded path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from . import _handlers as handlers
from . import _inbox as inbox
from . import _management as management
from ._history import history_file, history_link
from ._rules import Problem

if TYPE_CHECKING:
    from .._asgi import HTTPRequest, HTTPResponse
    from ._app import Emulator

__all__ = ["APP_ROUTES", "EMULATOR_ROUTES", "Route", "Router"]

Handler = Callable[["Emulator", "HTTPRequest", Mapping[str, str], str], Awaitable["HTTPResponse"]]


@final
@attrs.frozen
class Route:
    """*method* on a path of *segments* (``"{name}"`` captures one) is *endpoint*, answered
    by *handler* with the captured parameters plus *fixed* ones."""

    method: str
    segments: tuple[str, ...]
    endpoint: str
    handler: Handler
    fixed: Mapping[str, str] = attrs.field(factory=dict)

    def match(self, parts: Sequence[str]) -> dict[str, str] | None:
        """The parameters if *parts* has this route's shape, else ``None``."""
        if len(parts) != len(self.segments):
            return None
        params = dict(self.fixed)
        for segment, part in zip(self.segments, parts, strict=True):
            if segment.startswith("{"):
                params[segment[1:-1]] = part
            elif segment != part:
                return None
        return params


@final
class Router:
    """Routes by segment count, then in order; a known path with another method is a 405
    (or, without *methods_allowed*, not found like any other)."""

    __slots__ = ("_by_length", "_methods_allowed", "_not_found")

    def __init__(
        self,
        routes: Sequence[Route],
        not_found: Callable[[Sequence[str]], Problem],
        *,
        methods_allowed: bool = True,
    ) -> None:
        self._by_length: dict[int, list[Route]] = {}
        for route in routes:
            self._by_length.setdefault(len(route.segments), []).append(route)
        self._not_found = not_found
        self._methods_allowed = methods_allowed

    def match(self, method: str, parts: Sequence[str]) -> tuple[Route, dict[str, str]]:
        """The route of *method* and *parts*, and its parameters.

        Raises:
            Problem: 404 for a path no route has, 405 for another method on one.
        """
        allowed = False
        for route in self._by_length.get(len(parts), ()):
            params = route.match(parts)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed = True
        if allowed and self._methods_allowed:
            raise Problem(
                405, "method_not_allowed", f"{method} is not allowed here", reason="method"
            )
        raise self._not_found(parts)


def _no_resource(parts: Sequence[str]) -> Problem:
    return Problem(
        404, "service_resource_not_found", f"no resource at /{'/'.join(parts)}", reason="not_found"
    )


def _no_emulator_resource(parts: Sequence[str]) -> Problem:
    return Problem(
        404, "service_resource_not_found", "no such emulator resource", reason="not_found"
    )


def _send(resource: str, endpoint: str) -> Route:
    return Route("POST", ("messages", resource), endpoint, handlers.send, {"resource": resource})


def _import(resource: str, endpoint: str) -> Route:
    fixed: dict[str, Any] = {"resource": resource}
    return Route("POST", ("messages", resource, "import"), endpoint, handlers.import_message, fixed)


_ROAMING: Final = ("rest", "message", "roaming")
#: The rest of the message API (``beyond-seeds/``): ``_management.py``.
_MANAGEMENT: Final = (
    Route(
        "POST",
        ("messages", "broadcast"),
        "broadcast_users",
        management.broadcast,
        {"kind": "users"},
    ),
    Route(
        "POST",
        ("messages", "users", "broadcast"),
        "broadcast_online_users",
        management.broadcast,
        {"kind": "online_users"},
    ),
    Route(
        "POST",
        ("messages", "chatrooms", "broadcast"),
        "broadcast_rooms",
        management.broadcast,
        {"kind": "rooms"},
    ),
    Route(
        "POST",
        ("messages", "chatgroups", "users"),
        "group_members",
        management.members,
        {"resource": "chatgroups"},
    ),
    Route(
        "POST",
        ("messages", "chatrooms", "users"),
        "room_members",
        management.members,
        {"resource": "chatrooms"},
    ),
    Route("PUT", ("messages", "rewrite", "{msg_id}"), "rewrite", management.rewrite),
    Route("POST", ("messages", "batch_recall"), "batch_recall", management.batch_recall),
    Route(
        "DELETE",
        (*_ROAMING, "chat", "user", "{user}"),
        "roaming",
        management.roaming_ids,
        {"chat": "chat"},
    ),
    Route(
        "DELETE",
        (*_ROAMING, "group", "user", "{user}"),
        "roaming",
        management.roaming_ids,
        {"chat": "group"},
    ),
    Route(
        "DELETE",
        (*_ROAMING, "chat", "user", "{user}", "time"),
        "roaming",
        management.roaming_before,
        {"chat": "chat"},
    ),
    Route(
        "DELETE",
        (*_ROAMING, "group", "user", "{user}", "time"),
        "roaming",
        management.roaming_before,
        {"chat": "group"},
    ),
    Route(
        "POST", (*_ROAMING, "user", "{user}", "delete", "all"), "roaming", management.roaming_all
    ),
    Route("GET", ("users", "{user}", "offline_msg_count"), "offline", management.offline_count),
    Route(
        "GET",
        ("users", "{user}", "offline_msg_status", "{msg_id}"),
        "offline",
        management.offline_status,
    ),
)

#: Under ``/{org}/{app}/``.
APP_ROUTES: Final = Router(
    (
        Route("POST", ("token",), "token", handlers.token),
        _send("users", "users"),
        _send("chatgroups", "groups"),
        _send("chatrooms", "rooms"),
        _import("users", "import_users"),
        _import("chatgroups", "import_groups"),
        Route("POST", ("messages", "msg_recall"), "recall", handlers.recall),
        *_MANAGEMENT,
        Route("POST", ("chatfiles",), "upload", handlers.upload),
        Route("GET", ("chatfiles", "{uuid}"), "download", handlers.download),
        Route("GET", ("chatmessages", "{hour}"), "history", history_link),
        Route(
            "DELETE",
            ("users", "{username}", "user_channel"),
            "delete_conversation",
            handlers.delete_conversation,
        ),
    ),
    _no_resource,
)

#: Under ``/_emulator/``: inspection, and the history files the signed links point at.
EMULATOR_ROUTES: Final = Router(
    (
        Route("GET", ("stats",), "stats", handlers.stats),
        Route("POST", ("reset",), "reset", handlers.reset),
        Route("GET", ("deliveries",), "deliveries", handlers.deliveries),
        Route("GET", ("admissions",), "admissions", handlers.admissions),
        Route("GET", ("inbox",), "inbox", inbox.inbox_fragment),
        # The page itself is at the root (``GET /``); the app routes never have one part.
        Route("GET", ("inbox", "page"), "inbox_page", inbox.inbox_page),
        Route("GET", ("history", "{org}", "{app}", "{hour}"), "history_file", history_file),
    ),
    _no_emulator_resource,
    methods_allowed=False,
)
